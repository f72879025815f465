package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/gateway"
	"github.com/portcullis-dev/portcullis/internal/ops"
)

func configCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Configuration files"}
	cmd.AddCommand(&cobra.Command{
		Use:   "validate FILE",
		Short: "Check a configuration file and the policies it names",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := config.Load(args[0])
			if err != nil {
				return err
			}
			if err := gateway.CheckInlineValues(c); err != nil {
				return err
			}
			set, _, err := ops.LoadBundle(c)
			if err != nil {
				return fmt.Errorf("policy: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: valid (version %d, %d agents, %d upstreams, %d policies, policy %s)\n",
				args[0], c.Version, len(c.Agents), len(c.Upstreams), set.Len(), set.Version())
			return nil
		},
	})
	return cmd
}
