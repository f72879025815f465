package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/portcullis-dev/portcullis/internal/approval"
	"github.com/portcullis-dev/portcullis/internal/ops"
)

func approvalsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "approvals", Short: "Review calls held for human approval"}
	var lsrc source
	var state string
	list := &cobra.Command{
		Use:   "list",
		Short: "List approval requests (default: pending)",
		Args:  cobra.NoArgs,
		RunE: lsrc.run(func(cmd *cobra.Command, _ []string, o *ops.Ops) error {
			if state == "all" {
				state = ""
			}
			rs, err := o.ListApprovals(cmd.Context(), state)
			if err != nil {
				return err
			}
			w := newTable(cmd.OutOrStdout(), "ID\tSTATE\tAGENT\tTOOL\tEXPIRES\tWHY")
			for _, r := range rs {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.State, r.Agent, r.Tool, r.Expires.Local().Format(time.TimeOnly), firstOr(r.Reasons))
			}
			return w.Flush()
		}),
	}
	lsrc.flags(list)
	list.Flags().StringVar(&state, "state", approval.Pending, "pending, approved, denied, expired, consumed or all")

	var ssrc source
	show := &cobra.Command{
		Use:   "show ID",
		Short: "Show a request: agent, user, task, tool, arguments, why",
		Args:  cobra.ExactArgs(1),
		RunE: ssrc.run(func(cmd *cobra.Command, args []string, o *ops.Ops) error {
			r, err := o.ShowApproval(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			fmt.Fprint(cmd.OutOrStdout(), r.Describe())
			return nil
		}),
	}
	ssrc.flags(show)
	cmd.AddCommand(list, show, decideCmd(approval.Approved), decideCmd(approval.Denied))
	return cmd
}

func decideCmd(state string) *cobra.Command {
	var src source
	var by, comment string
	var session, task bool
	verb := map[string]string{approval.Approved: "approve", approval.Denied: "deny"}[state]
	cmd := &cobra.Command{
		Use:   verb + " ID",
		Short: verb + " a held call (you cannot decide your own request)",
		Args:  cobra.ExactArgs(1),
		RunE: src.run(func(cmd *cobra.Command, args []string, o *ops.Ops) error {
			by, err := actor(by)
			if err != nil {
				return err
			}
			scope := approval.ScopeOnce
			switch {
			case session && task:
				return fmt.Errorf("give --for-session or --for-task, not both")
			case session:
				scope = approval.ScopeSession
			case task:
				scope = approval.ScopeTask
			}
			r, err := o.DecideApproval(cmd.Context(), args[0], state, by, scope, comment)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s %s: %s calling %s\n", r.ID, r.State, r.Agent, r.Tool)
			return nil
		}),
	}
	src.flags(cmd)
	cmd.Flags().StringVar(&by, "by", "", "reviewer (default: $USER)")
	cmd.Flags().StringVar(&comment, "comment", "", "recorded with the decision")
	if state == approval.Approved {
		cmd.Flags().BoolVar(&session, "for-session", false, "also allow this tool for the rest of the agent's session")
		cmd.Flags().BoolVar(&task, "for-task", false, "also allow this tool for the rest of the agent's task (it ends with the task)")
	}
	return cmd
}

func firstOr(s []string) string {
	if len(s) == 0 {
		return "-"
	}
	return s[0]
}
