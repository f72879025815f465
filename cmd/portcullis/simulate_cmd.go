package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/portcullis-dev/portcullis/internal/simulate"
)

func simulateCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "simulate",
		Short: "Run scripted agent misbehaviours and normal traffic through a real gateway; report detection, triage and containment",
		Long: "Starts a gateway of its own (in a temporary directory, on loopback, with the built-in demo upstream,\n" +
			"declared baselines and a response playbook), runs each scenario as a real MCP client, and prints\n" +
			"which misbehaviours were detected, how fast, how they were triaged and whether the session was\n" +
			"contained. Exits non-zero if a misbehaviour went undetected or normal traffic raised an alert.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dir, err := os.MkdirTemp("", "portcullis-simulate-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(dir)
			rs, err := simulate.Run(cmd.Context(), dir)
			if err != nil {
				return err
			}
			fmt.Fprint(cmd.OutOrStdout(), simulate.Table(rs))
			for _, r := range rs {
				if !r.OK() {
					return simulate.ErrFailed
				}
			}
			return nil
		},
	}
}
