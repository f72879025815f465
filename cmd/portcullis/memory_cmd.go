package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/portcullis-dev/portcullis/internal/memory"
	"github.com/portcullis-dev/portcullis/internal/ops"
)

func memoryCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "memory", Short: "The built-in agent memory: versions, quarantine, release, purge, rollback (every change audited)"}

	var lsrc source
	var scope, session string
	var n int
	log := &cobra.Command{
		Use:   "log",
		Short: "List memory versions (of a scope, or written by a session): state, who wrote it, labels, findings",
		Args:  cobra.NoArgs,
		RunE: lsrc.run(func(cmd *cobra.Command, _ []string, o *ops.Ops) error {
			es, err := o.Memory().Log(cmd.Context(), scope, session, n)
			if err != nil {
				return err
			}
			w := newTable(cmd.OutOrStdout(), "VERSION\tTIME\tSCOPE\tKEY\tSTATE\tAGENT\tUSER\tSESSION\tBY\tUNTRUSTED\tLABELS\tFINDINGS")
			for _, e := range es {
				fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%v\t%s\t%s\n", e.ID, e.Created.Local().Format(time.DateTime), e.Scope, shortKey(e.Key),
					e.State, e.Agent, orDash(e.User), orDash(e.Session), e.By, e.Untrusted, orDash(strings.Join(e.Labels, ",")), orDash(strings.Join(e.Findings, ",")))
			}
			return w.Flush()
		}),
	}
	lsrc.flags(log)
	log.Flags().StringVar(&scope, "scope", "", "only this scope (user:NAME, agent:NAME, task:ID, session:ID, shared:NAME)")
	log.Flags().StringVar(&session, "session", "", "only the versions this session wrote")
	log.Flags().IntVarP(&n, "lines", "n", 200, "at most this many")

	var ssrc source
	show := &cobra.Command{
		Use:   "show VERSION",
		Short: "Show one version: content, attribution, labels, findings, and whether it verifies against the audit log",
		Args:  cobra.ExactArgs(1),
		RunE: ssrc.run(func(cmd *cobra.Command, args []string, o *ops.Ops) error {
			id, err := strconv.ParseInt(args[0], 10, 64)
			if err != nil {
				return fmt.Errorf("version: %w", err)
			}
			e, ok, err := o.Memory().Version(cmd.Context(), id)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "version   %d (%s)\nscope     %s\nkey       %s\nkind      %s\n", e.ID, e.State, e.Scope, e.Key, e.Kind)
			fmt.Fprintf(out, "written   %s by %s (agent %s, user %s, task %s, session %s, request %s)\n", e.Created.Local().Format(time.RFC3339), e.By,
				e.Agent, orDash(e.User), orDash(e.Task), orDash(e.Session), orDash(e.RequestID))
			fmt.Fprintf(out, "untrusted %v\nlabels    %s\nfindings  %s\n", e.Untrusted, orDash(strings.Join(e.Labels, ",")), orDash(strings.Join(e.Findings, ",")))
			if !e.Expires.IsZero() {
				fmt.Fprintf(out, "expires   %s\n", e.Expires.Local().Format(time.RFC3339))
			}
			verdict := "verifies against the hash the audit log committed"
			if !ok {
				verdict = "DOES NOT VERIFY against the audit log (never returned to agents)"
			}
			fmt.Fprintf(out, "integrity %s\ncontent   %s\n", verdict, orDash(string(e.Body)))
			return nil
		}),
	}
	ssrc.flags(show)

	var rsrc source
	var to, before, rby, rwhy, rscope string
	rollback := &cobra.Command{
		Use:   "rollback --to TIME|VERSION | --before-session ID",
		Short: "Return memory (of a scope, or all) to its state at a time, a version, or just before a session's first write",
		Args:  cobra.NoArgs,
		RunE: rsrc.run(func(cmd *cobra.Command, _ []string, o *ops.Ops) error {
			by, err := actor(rby)
			if err != nil {
				return err
			}
			var t memory.RollbackTarget
			switch {
			case (to == "") == (before == ""):
				return errors.New("give --to TIME|VERSION or --before-session ID")
			case before != "":
				t.BeforeSession = before
			default:
				if v, err := strconv.ParseInt(to, 10, 64); err == nil {
					t.Version = v
				} else if tm, err := time.Parse(time.RFC3339, to); err == nil {
					t.Time = tm
				} else {
					return fmt.Errorf("--to: %q is neither a version nor an RFC 3339 time", to)
				}
			}
			n, err := o.Memory().Rollback(cmd.Context(), rscope, t, by, rwhy)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d elements rolled back (audited); a running gateway serves them from its next read\n", n)
			return nil
		}),
	}
	rsrc.flags(rollback)
	rollback.Flags().StringVar(&to, "to", "", "a version number, or an RFC 3339 time")
	rollback.Flags().StringVar(&before, "before-session", "", "the session whose writes (and everything after) to undo")
	rollback.Flags().StringVar(&rscope, "scope", "", "only this scope")
	rollback.Flags().StringVar(&rby, "by", "", "who (default: $USER)")
	rollback.Flags().StringVar(&rwhy, "reason", "", "why (recorded in the audit log)")

	cmd.AddCommand(log, show, rollback,
		memoryStateCmd("quarantine", "Withhold an element from agents (kept for forensics)", (*memory.Service).Quarantine),
		memoryStateCmd("release", "Return a quarantined element to agents (its labels kept: readers still take them)", (*memory.Service).Release),
		memoryStateCmd("purge", "Erase an element's content in every version for good (its hashes stay in the audit log)", (*memory.Service).Purge))
	return cmd
}

func memoryStateCmd(verb, short string, op func(*memory.Service, context.Context, int64, string, string) error) *cobra.Command {
	var src source
	var by, why string
	cmd := &cobra.Command{
		Use:   verb + " VERSION",
		Short: short + " (VERSION: any version of the element, from `memory log`)",
		Args:  cobra.ExactArgs(1),
		RunE: src.run(func(cmd *cobra.Command, args []string, o *ops.Ops) error {
			by, err := actor(by)
			if err != nil {
				return err
			}
			id, err := strconv.ParseInt(args[0], 10, 64)
			if err != nil {
				return fmt.Errorf("version: %w", err)
			}
			if err := op(o.Memory(), cmd.Context(), id, by, why); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: done (audited)\n", verb)
			return nil
		}),
	}
	src.flags(cmd)
	cmd.Flags().StringVar(&by, "by", "", "who (default: $USER)")
	cmd.Flags().StringVar(&why, "reason", "", "why (recorded in the audit log)")
	return cmd
}

func shortKey(k string) string {
	k = strings.ReplaceAll(k, "\x1f", " ")
	if len(k) > 60 {
		return k[:57] + "..."
	}
	return k
}
