package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/store"
)

func auditCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "The audit log"}
	var src source
	var n int
	var follow, asJSON bool
	var agent, requestID string
	tail := &cobra.Command{
		Use:   "tail",
		Short: "Show the latest audit events (and follow new ones with -f)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := src.openStore()
			if err != nil {
				return err
			}
			defer st.Close()
			q := store.EventQuery{Limit: n, Last: true, Agent: agent, RequestID: requestID}
			return tailEvents(cmd.Context(), st, q, follow, asJSON, cmd.OutOrStdout())
		},
	}
	src.flags(tail)
	tail.Flags().IntVarP(&n, "lines", "n", 20, "how many of the latest events to show")
	tail.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new events")
	tail.Flags().BoolVar(&asJSON, "json", false, "print events as JSON lines")
	tail.Flags().StringVar(&agent, "agent", "", "only events of this agent")
	tail.Flags().StringVar(&requestID, "request", "", "only events of this request ID")
	cmd.AddCommand(tail, verifyCmd(), proveCmd(), verifyProofCmd(), checkpointCmd(), pruneCmd(), traceCmd(), replayCmd())
	return cmd
}

func tailEvents(ctx context.Context, st *store.DB, q store.EventQuery, follow, asJSON bool, w io.Writer) error {
	for {
		rows, err := st.Events(ctx, q)
		if err != nil {
			return err
		}
		for _, r := range rows {
			e, err := audit.Decode(r)
			if err != nil {
				return err
			}
			if err := printEvent(w, e, asJSON); err != nil {
				return err
			}
			q.AfterSeq = r.Seq
		}
		if !follow {
			return nil
		}
		q.Last, q.Limit = false, store.MaxQueryLimit
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func printEvent(w io.Writer, e *audit.Event, asJSON bool) error {
	if asJSON {
		b, err := json.Marshal(e)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%6d %s %-16s %-5s", e.Seq, e.Time.Local().Format("15:04:05.000"), e.Type, e.Outcome)
	field := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&b, " %s=%s", k, v)
		}
	}
	field("agent", e.Agent)
	field("method", e.Method)
	field("target", e.Target)
	field("upstream", e.Upstream)
	field("code", string(e.Code))
	if len(e.Policies) > 0 {
		field("policies", strings.Join(e.Policies, ","))
	}
	field("req", e.RequestID)
	if e.LatencyMicros > 0 {
		field("latency", fmt.Sprintf("%dµs", e.LatencyMicros))
	}
	field("detail", e.Detail)
	_, err := fmt.Fprintln(w, b.String())
	return err
}
