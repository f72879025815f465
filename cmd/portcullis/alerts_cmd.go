package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/portcullis-dev/portcullis/internal/ops"
)

func alertsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "alerts", Short: "Alerts of behavioural monitoring: list, show, acknowledge, resolve"}
	var lsrc source
	var state string
	var n int
	list := &cobra.Command{
		Use:   "list",
		Short: "List the latest alerts (default: open ones) with their triage verdict",
		Args:  cobra.NoArgs,
		RunE: lsrc.run(func(cmd *cobra.Command, _ []string, o *ops.Ops) error {
			vs, err := o.Alerts(cmd.Context(), state, n)
			if err != nil {
				return err
			}
			w := newTable(cmd.OutOrStdout(), "ID\tSTATE\tTIME\tSEVERITY\tCLASS\tAGENT\tUSER\tTRIAGE\tRESPONSE")
			for _, v := range vs {
				verdict, resp := "-", "-"
				if v.Triage != nil {
					verdict = string(v.Triage.Code)
				}
				if len(v.Responses) > 0 {
					resp = string(v.Responses[len(v.Responses)-1].Code)
				}
				a := v.Alert
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", a.Alert, v.State, a.Time.Local().Format(time.DateTime), a.Severity, a.Code, a.Agent, orDash(a.User), verdict, resp)
			}
			return w.Flush()
		}),
	}
	lsrc.flags(list)
	list.Flags().StringVar(&state, "state", ops.AlertOpen, "open, acknowledged, resolved or all")
	list.Flags().IntVarP(&n, "lines", "n", 50, "at most this many")

	var ssrc source
	show := &cobra.Command{
		Use:   "show ID",
		Short: "Show an alert: evidence, agent, user, task, session, triage, response steps, state",
		Args:  cobra.ExactArgs(1),
		RunE: ssrc.run(func(cmd *cobra.Command, args []string, o *ops.Ops) error {
			v, err := o.ShowAlert(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			fmt.Fprint(cmd.OutOrStdout(), v.Describe())
			return nil
		}),
	}
	ssrc.flags(show)
	cmd.AddCommand(list, show, alertStateCmd("ack", ops.AlertAcknowledged), alertStateCmd("resolve", ops.AlertResolved), releaseCmd())
	return cmd
}

// releaseCmd undoes a containment step (read-only, approval, terminated);
// `agent|task|token unrevoke` undoes a revocation.
func releaseCmd() *cobra.Command {
	var src source
	var by, session, agent string
	cmd := &cobra.Command{
		Use:   "release --session ID | --agent NAME",
		Short: "Lift the response's containment of a session or of every session of an agent (audited; applied within a second)",
		Args:  cobra.NoArgs,
		RunE: src.run(func(cmd *cobra.Command, _ []string, o *ops.Ops) error {
			by, err := actor(by)
			if err != nil {
				return err
			}
			if err := o.ReleaseContainment(cmd.Context(), session, agent, by); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "released; a running gateway applies it within a second (a revocation is lifted by `portcullis agent|task|token unrevoke`)")
			return nil
		}),
	}
	src.flags(cmd)
	cmd.Flags().StringVar(&session, "session", "", "the contained session")
	cmd.Flags().StringVar(&agent, "agent", "", "the agent whose sessions are contained")
	cmd.Flags().StringVar(&by, "by", "", "who (default: $USER)")
	return cmd
}

func incidentsCmd() *cobra.Command {
	var src source
	var all bool
	cmd := &cobra.Command{
		Use:   "incidents",
		Short: "Alerts grouped by agent and session: classes, highest severity, worst triage verdict, steps taken",
		Args:  cobra.NoArgs,
		RunE: src.run(func(cmd *cobra.Command, _ []string, o *ops.Ops) error {
			ins, err := o.Incidents(cmd.Context(), !all)
			if err != nil {
				return err
			}
			w := newTable(cmd.OutOrStdout(), "AGENT\tUSER\tSESSION\tFIRST\tLAST\tALERTS\tOPEN\tSEVERITY\tVERDICT\tCLASSES\tSTEPS")
			for _, in := range ins {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\n", in.Agent, orDash(in.User), orDash(in.Session),
					in.First.Local().Format(time.DateTime), in.Last.Local().Format(time.TimeOnly), len(in.Alerts), in.Open,
					orDash(in.Severity), orDash(in.Verdict), strings.Join(in.Classes, ","), orDash(strings.Join(in.Steps, ",")))
			}
			return w.Flush()
		}),
	}
	src.flags(cmd)
	cmd.Flags().BoolVar(&all, "all", false, "also incidents whose alerts are all resolved")
	return cmd
}

func alertStateCmd(verb, state string) *cobra.Command {
	var src source
	var by, comment string
	cmd := &cobra.Command{
		Use:   verb + " ID",
		Short: "Mark an alert " + state + " (audited in your name)",
		Args:  cobra.ExactArgs(1),
		RunE: src.run(func(cmd *cobra.Command, args []string, o *ops.Ops) error {
			by, err := actor(by)
			if err != nil {
				return err
			}
			if err := o.SetAlertState(cmd.Context(), args[0], state, by, comment); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s %s\n", args[0], state)
			return nil
		}),
	}
	src.flags(cmd)
	cmd.Flags().StringVar(&by, "by", "", "who (default: $USER)")
	cmd.Flags().StringVar(&comment, "comment", "", "recorded with the state")
	return cmd
}
