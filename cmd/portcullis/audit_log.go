package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/mod/sumdb/note"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/ops"
	"github.com/portcullis-dev/portcullis/internal/policy"
	"github.com/portcullis-dev/portcullis/internal/store"
)

// dataDir returns the data directory the flags select: --data-dir alone is
// enough for commands that only read the log (a copy of the data works).
func (s *source) dataDirOnly() (string, error) {
	if s.config == "" && !s.dev && s.dataDir != "" {
		return s.dataDir, nil
	}
	cfg, err := s.load()
	if err != nil {
		return "", err
	}
	return ops.DataDir(cfg), nil
}

func (s *source) openStore() (*store.DB, error) {
	if s.config != "" || s.dev {
		cfg, err := s.load()
		if err != nil {
			return nil, err
		}
		if cfg.Store.Postgres != nil {
			return ops.OpenStore(cfg, store.Options{})
		}
	}
	dir, err := s.dataDirOnly()
	if err != nil {
		return nil, err
	}
	p := filepath.Join(dir, ops.StoreFile)
	if _, err := os.Stat(p); err != nil {
		return nil, fmt.Errorf("open audit log: %w", err)
	}
	return store.Open(p)
}

func readKey(path, dataDir string, w io.Writer) (string, error) {
	if path == "" {
		path = filepath.Join(dataDir, "keys", audit.LogPubKeyFile)
		fmt.Fprintf(w, "warning: using the public key stored beside the log (%s); give --key with a copy kept elsewhere, or a rewritten log re-signed with a new key would pass\n", path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read log public key: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

func verifyCmd() *cobra.Command {
	var src source
	var key string
	var copies []string
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Verify the audit log offline: recompute the Merkle tree and check every signed checkpoint",
		Long: "Recompute the log's Merkle tree from the stored events, check every checkpoint\n" +
			"signature (from the store and from --checkpoints directories) and that each\n" +
			"checkpoint matches the recomputed tree. Names the first event altered, removed,\n" +
			"inserted or reordered. Exit status 1 if anything is wrong. Works on a copy of\n" +
			"the data directory (--data-dir).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dir, err := src.dataDirOnly()
			if err != nil {
				return err
			}
			vkey, err := readKey(key, dir, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			v, err := note.NewVerifier(vkey)
			if err != nil {
				return fmt.Errorf("log public key: %w", err)
			}
			var extra [][]byte
			for _, d := range copies {
				b, err := audit.ReadCopies(d)
				if err != nil {
					return err
				}
				extra = append(extra, b...)
			}
			st, err := src.openStore()
			if err != nil {
				return err
			}
			defer st.Close()
			start := time.Now()
			rep, err := audit.Verify(cmd.Context(), st, v, extra)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "%d events (%d pruned), %d checkpoints, %d events anchored by a matching checkpoint, in %s\n",
				rep.Events, rep.Pruned, rep.Checkpoints, rep.Anchored, time.Since(start).Round(time.Millisecond))
			if rep.OK() {
				if n := rep.Events - rep.Anchored; n > 0 {
					fmt.Fprintf(w, "note: the last %d events are not yet covered by a checkpoint\n", n)
				}
				fmt.Fprintln(w, "log verified")
				return nil
			}
			for _, p := range rep.Problems {
				fmt.Fprintln(w, "PROBLEM:", p)
			}
			return fmt.Errorf("audit log failed verification; first bad event: %d", rep.FirstBad)
		},
	}
	src.flags(cmd)
	cmd.Flags().StringVar(&key, "key", "", "the log's public key file (default: the copy in the data directory, with a warning)")
	cmd.Flags().StringSliceVar(&copies, "checkpoints", nil, "directories holding checkpoint copies to check as well")
	return cmd
}

func proveCmd() *cobra.Command {
	var src source
	var size int64
	cmd := &cobra.Command{
		Use:   "prove SEQ",
		Short: "Print an inclusion proof of event SEQ against a signed checkpoint (JSON)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			seq, err := parseSeq(args[0])
			if err != nil {
				return err
			}
			st, err := src.openStore()
			if err != nil {
				return err
			}
			defer st.Close()
			p, err := audit.Prove(cmd.Context(), st, seq, size)
			if err != nil {
				return fmt.Errorf("prove event %d: %w", seq, err)
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			return enc.Encode(p)
		},
	}
	src.flags(cmd)
	cmd.Flags().Int64Var(&size, "size", 0, "the checkpoint (tree size) to prove against (default: the first that covers the event)")
	return cmd
}

// MaxProofBytes bounds a proof file.
const MaxProofBytes = 1 << 20

func verifyProofCmd() *cobra.Command {
	var key string
	cmd := &cobra.Command{
		Use:   "verify-proof PROOF.json --key LOG.pub",
		Short: "Verify an inclusion proof with only the proof and the log's public key",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if key == "" {
				return errors.New("--key is required")
			}
			kb, err := os.ReadFile(key)
			if err != nil {
				return err
			}
			f, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			var p audit.InclusionProof
			if err := json.NewDecoder(io.LimitReader(f, MaxProofBytes)).Decode(&p); err != nil {
				return fmt.Errorf("read proof: %w", err)
			}
			h, err := audit.VerifyInclusionProof(&p, strings.TrimSpace(string(kb)))
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "event %d is in log %s at tree size %d\n", p.Seq, h.Origin, h.Size)
			return nil
		},
	}
	cmd.Flags().StringVar(&key, "key", "", "the log's public key file")
	return cmd
}

func checkpointCmd() *cobra.Command {
	var src source
	cmd := &cobra.Command{
		Use:   "checkpoint",
		Short: "Sign a checkpoint of the log now (the gateway also does so periodically and at shutdown)",
		Args:  cobra.NoArgs,
		RunE: src.run(func(cmd *cobra.Command, _ []string, o *ops.Ops) error {
			h, err := o.Checkpoint(cmd.Context())
			if err != nil {
				return err
			}
			fmt.Fprint(cmd.OutOrStdout(), h.Body())
			return nil
		}),
	}
	src.flags(cmd)
	return cmd
}

func pruneCmd() *cobra.Command {
	var src source
	var older time.Duration
	cmd := &cobra.Command{
		Use:   "prune --older-than 2160h",
		Short: "Remove the bodies of old events, keeping their hashes so the log still verifies",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if older < time.Hour {
				return errors.New("--older-than must be at least 1h")
			}
			o, err := src.open()
			if err != nil {
				return err
			}
			defer o.Close()
			n, err := o.Prune(cmd.Context(), time.Now().Add(-older))
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "pruned the bodies of %d events\n", n)
			return nil
		},
	}
	src.flags(cmd)
	cmd.Flags().DurationVar(&older, "older-than", 0, "prune events older than this")
	return cmd
}

func traceCmd() *cobra.Command {
	var src source
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "trace ID",
		Short: "Show every event of one request ID, W3C trace ID or task ID",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := src.openStore()
			if err != nil {
				return err
			}
			defer st.Close()
			return traceEvents(cmd.Context(), st, args[0], asJSON, cmd.OutOrStdout())
		},
	}
	src.flags(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print events as JSON lines")
	return cmd
}

// traceEvents prints the events of a request ID, a W3C trace ID or a task
// ID, in log order.
func traceEvents(ctx context.Context, st *store.DB, id string, asJSON bool, w io.Writer) error {
	seen := map[int64]bool{}
	var n int
	task, _ := json.Marshal(id)
	for _, q := range []store.EventQuery{{RequestID: id}, {TraceID: id}, {BodyContains: `"task":` + string(task)}} {
		rows, err := st.Events(ctx, q)
		if err != nil {
			return err
		}
		for _, r := range rows {
			if seen[r.Seq] {
				continue
			}
			e, err := audit.Decode(r)
			if err != nil {
				return err
			}
			if q.BodyContains != "" && e.Task != id {
				continue // the text was somewhere else in the body
			}
			seen[r.Seq] = true
			if err := printEvent(w, e, asJSON); err != nil {
				return err
			}
			n++
		}
	}
	if n == 0 {
		return fmt.Errorf("no events for %q", id)
	}
	return nil
}

func replayCmd() *cobra.Command {
	var src source
	cmd := &cobra.Command{
		Use:   "replay SEQ",
		Short: "Re-evaluate a recorded decision under the policy that made it and under the current policy",
		Long: "Re-evaluate a recorded decision under the policy bundle that made it and under the\n" +
			"configuration's policy now. Exit status: 0 when both decide alike, 3 when the\n" +
			"current policy decides differently (for CI: a policy change that flips a recorded\n" +
			"decision), 1 on error.",
		Args: cobra.ExactArgs(1),
		RunE: src.run(func(cmd *cobra.Command, args []string, o *ops.Ops) error {
			seq, err := parseSeq(args[0])
			if err != nil {
				return err
			}
			r, err := o.ReplayDecision(cmd.Context(), seq)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			e := r.Event
			fmt.Fprintf(w, "event %d: %s %s by %s: recorded %s (%s) under %s\n", e.Seq, e.Action, e.Target, e.Agent, e.Outcome, orDash(string(e.Code)), e.PolicyVersion)
			if e.Input.Redactions > 0 {
				fmt.Fprintf(w, "note: %d argument values were redacted when recorded and are replayed as their hashes\n", e.Input.Redactions)
			}
			show := func(label string, d policy.Decision) {
				out := "deny"
				if d.Allow {
					out = "allow"
				}
				fmt.Fprintf(w, "%-9s %-5s %-20s policies=%s version=%s\n", label, out, orDash(string(d.Code)), orDash(strings.Join(d.Policies, ",")), d.Version)
			}
			show("recorded", r.Recorded)
			show("current", r.Current)
			if r.Recorded.Allow != r.Current.Allow {
				return &exitStatus{code: ExitDecisionDiffers, msg: "the current policy decides differently"}
			}
			return nil
		}),
	}
	src.flags(cmd)
	return cmd
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// parseSeq reads an event's sequence number.
func parseSeq(arg string) (int64, error) {
	seq, err := strconv.ParseInt(arg, 10, 64)
	if err != nil || seq < 1 {
		return 0, fmt.Errorf("event %q: want a sequence number", arg)
	}
	return seq, nil
}
