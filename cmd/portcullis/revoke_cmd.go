package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/portcullis-dev/portcullis/internal/gateway"
	"github.com/portcullis-dev/portcullis/internal/store"
)

// revokeCmd is `<noun> revoke VALUE` for tokens, tasks and agents.
func revokeCmd(kind, what string) *cobra.Command {
	var src source
	var by, reason string
	cmd := &cobra.Command{
		Use:   "revoke " + what,
		Short: "Revoke " + map[string]string{store.RevokeToken: "one credential (by its ID)", store.RevokeTask: "a task and every token delegated within it", store.RevokeAgent: "every credential of an agent"}[kind],
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := src.load()
			if err != nil {
				return err
			}
			if by == "" {
				by = os.Getenv("USER")
			}
			if err := gateway.Revoke(cmd.Context(), cfg, kind, args[0], by, reason); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s %s revoked; a running gateway refuses it within %s\n", kind, args[0], gateway.RevocationRefresh)
			return nil
		},
	}
	src.flags(cmd)
	cmd.Flags().StringVar(&by, "by", "", "who revokes (default: $USER)")
	cmd.Flags().StringVar(&reason, "reason", "", "why (recorded in the audit log)")
	return cmd
}

func agentCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "agent", Short: "Agents"}
	cmd.AddCommand(revokeCmd(store.RevokeAgent, "NAME"))
	return cmd
}
