package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/gateway"
	"github.com/portcullis-dev/portcullis/internal/policy"
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
			srcs, err := gateway.LoadPolicies(c)
			if err != nil {
				return err
			}
			set, err := policy.Compile(srcs)
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

func policyCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "policy", Short: "Cedar policies"}
	cmd.AddCommand(&cobra.Command{
		Use:   "validate PATH...",
		Short: "Parse and validate policy files or directories against the Portcullis schema",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			srcs, err := policy.ReadSources(args)
			if err != nil {
				return err
			}
			set, err := policy.Compile(srcs)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d policies valid, version %s\n", set.Len(), set.Version())
			return nil
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "schema",
		Short: "Print the Cedar schema policies are validated against",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := cmd.OutOrStdout().Write(policy.Schema())
			return err
		},
	})
	return cmd
}
