package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/portcullis-dev/portcullis/internal/ops"
	"github.com/portcullis-dev/portcullis/internal/store"
)

func migrateCmd() *cobra.Command {
	var src source
	var status bool
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Bring the store's schema up to date (serve does it at start), or show its version",
		Long: "Apply the schema migrations the store lacks, in one transaction: the data\n" +
			"directory's SQLite file, or the PostgreSQL database of store.postgres (gateways\n" +
			"of a fleet take turns). A store whose schema is newer than this binary's is\n" +
			"refused, here and by serve. --status reports without changing anything.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := src.load()
			if err != nil {
				return err
			}
			// Opening applies what is missing (unless --status); then
			// say what the store is at.
			st, err := ops.OpenStore(cfg, store.Options{NoMigrate: status})
			if err != nil {
				return err
			}
			defer st.Close()
			m, err := st.MigrationStatus(cmd.Context())
			if err != nil {
				return err
			}
			if status {
				fmt.Fprintf(cmd.OutOrStdout(), "%s: %s store, schema version %d (this binary knows up to %d)\n", ops.StoreName(cfg), st.Backend(), m.Version, m.Known)
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %s store, schema at version %d\n", ops.StoreName(cfg), st.Backend(), m.Version)
			return nil
		},
	}
	src.flags(cmd)
	cmd.Flags().BoolVar(&status, "status", false, "report the schema version only")
	return cmd
}
