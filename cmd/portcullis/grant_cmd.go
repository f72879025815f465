package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/portcullis-dev/portcullis/internal/ops"
)

func grantCmd() *cobra.Command {
	var src source
	var agent, tool, reason, by string
	var d time.Duration
	cmd := &cobra.Command{
		Use:   "grant --agent A --tool UPSTREAM__TOOL --for 15m --reason TEXT",
		Short: "Give an agent a time-bound permission to call one tool (just-in-time privilege)",
		Long: "A grant lets one agent call one tool that no policy permits, until it expires\n" +
			"(at most 8h). A forbid policy still wins. Creating, revoking and expiring a grant\n" +
			"is audited. The running gateway picks a grant up within a second.",
		Args: cobra.NoArgs,
		RunE: src.run(func(cmd *cobra.Command, _ []string, o *ops.Ops) error {
			by, err := actor(by)
			if err != nil {
				return err
			}
			g, err := o.CreateGrant(cmd.Context(), agent, tool, reason, by, d)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %s may call %s until %s\n", g.ID, g.Agent, g.Tool, g.Expires.Local().Format(time.RFC3339))
			return nil
		}),
	}
	src.flags(cmd)
	cmd.Flags().StringVar(&agent, "agent", "", "the agent")
	cmd.Flags().StringVar(&tool, "tool", "", "the qualified tool name (<upstream>__<tool>)")
	cmd.Flags().DurationVar(&d, "for", 0, "how long (at most 8h)")
	cmd.Flags().StringVar(&reason, "reason", "", "why (recorded in the audit log)")
	cmd.Flags().StringVar(&by, "by", "", "who grants (default: $USER); cannot be the agent")

	var lsrc source
	var all bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List active grants (--all: every grant)",
		Args:  cobra.NoArgs,
		RunE: lsrc.run(func(cmd *cobra.Command, _ []string, o *ops.Ops) error {
			gs, err := o.ListGrants(cmd.Context(), !all)
			if err != nil {
				return err
			}
			w := newTable(cmd.OutOrStdout(), "ID\tAGENT\tTOOL\tEXPIRES\tSTATE\tBY\tREASON")
			now := time.Now()
			for _, g := range gs {
				state := "active"
				switch {
				case g.Revoked:
					state = "revoked"
				case !g.Active(now):
					state = "expired"
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", g.ID, g.Agent, g.Tool, g.Expires.Local().Format(time.RFC3339), state, g.GrantedBy, g.Reason)
			}
			return w.Flush()
		}),
	}
	lsrc.flags(list)
	list.Flags().BoolVar(&all, "all", false, "include expired and revoked grants")

	var rsrc source
	var rby string
	revoke := &cobra.Command{
		Use:   "revoke ID",
		Short: "End a grant now",
		Args:  cobra.ExactArgs(1),
		RunE: rsrc.run(func(cmd *cobra.Command, args []string, o *ops.Ops) error {
			rby, err := actor(rby)
			if err != nil {
				return err
			}
			g, err := o.RevokeGrant(cmd.Context(), args[0], rby)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s revoked (%s, %s)\n", g.ID, g.Agent, g.Tool)
			return nil
		}),
	}
	rsrc.flags(revoke)
	revoke.Flags().StringVar(&rby, "by", "", "who revokes (default: $USER)")
	cmd.AddCommand(list, revoke)
	return cmd
}
