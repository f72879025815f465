package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/portcullis-dev/portcullis/internal/ops"
)

func baselineCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "baseline", Short: "Learned baselines: show, export (a known-good recovery point), restore"}
	var ssrc source
	var agent string
	show := &cobra.Command{
		Use:   "show",
		Short: "Show the learned profiles (as the gateway saved them last): learning or scoring, top tools, rate, denials, drift",
		Args:  cobra.NoArgs,
		RunE: ssrc.run(func(cmd *cobra.Command, _ []string, o *ops.Ops) error {
			s, saved, err := o.Baselines(cmd.Context())
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "saved %s, %d profiles\n", saved.Local().Format(time.DateTime), len(s.Profiles))
			w := newTable(cmd.OutOrStdout(), "PROFILE\tOBSERVED\tREFERENCE\tTOP TOOLS\tCALLS/MIN\tDENIED\tDISTANCE\tDRIFT")
			for _, p := range s.Profiles {
				if agent != "" && p.Key != "agent:"+agent {
					continue
				}
				ref := "learning"
				if p.Reference != nil {
					ref = p.Reference.At.Local().Format(time.DateOnly)
				}
				fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%.1f±%.1f\t%.3f\t%.2f\t%.2f\n", p.Key, p.Observations, ref, topTools(p.Tools, 3),
					p.Rate.Mean, p.Rate.SD(), p.Denials.Mean, p.LastDistance, p.LastDriftStat)
			}
			return w.Flush()
		}),
	}
	ssrc.flags(show)
	show.Flags().StringVar(&agent, "agent", "", "only this agent's profile")

	var esrc source
	var out string
	export := &cobra.Command{
		Use:   "export",
		Short: "Write the learned baselines as a JSON snapshot (to restore later with `baseline restore`)",
		Args:  cobra.NoArgs,
		RunE: esrc.run(func(cmd *cobra.Command, _ []string, o *ops.Ops) error {
			s, _, err := o.Baselines(cmd.Context())
			if err != nil {
				return err
			}
			b, err := json.MarshalIndent(s, "", "  ")
			if err != nil {
				return err
			}
			b = append(b, '\n')
			if out == "" || out == "-" {
				_, err = cmd.OutOrStdout().Write(b)
				return err
			}
			return os.WriteFile(out, b, 0o600)
		}),
	}
	esrc.flags(export)
	export.Flags().StringVarP(&out, "output", "o", "", "file to write (default: standard output)")

	var rsrc source
	var by string
	restore := &cobra.Command{
		Use:   "restore FILE",
		Short: "Replace the learned baselines with an exported snapshot (audited); a running gateway loads it at its next sync",
		Args:  cobra.ExactArgs(1),
		RunE: rsrc.run(func(cmd *cobra.Command, args []string, o *ops.Ops) error {
			by, err := actor(by)
			if err != nil {
				return err
			}
			f, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			doc, err := io.ReadAll(io.LimitReader(f, maxSnapshot+1))
			if err != nil {
				return err
			}
			if len(doc) > maxSnapshot {
				return fmt.Errorf("%s: larger than %d MiB", args[0], maxSnapshot>>20)
			}
			s, err := o.RestoreBaselines(cmd.Context(), doc, by)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "restored the snapshot of %s (%d profiles)\n", s.Taken.Local().Format(time.DateTime), len(s.Profiles))
			return nil
		}),
	}
	rsrc.flags(restore)
	restore.Flags().StringVar(&by, "by", "", "who (default: $USER)")
	cmd.AddCommand(show, export, restore)
	return cmd
}

// maxSnapshot bounds a snapshot read by restore.
const maxSnapshot = 256 << 20

func topTools(m map[string]float64, n int) string {
	keys := slices.Collect(maps.Keys(m))
	slices.SortFunc(keys, func(a, b string) int {
		if m[a] != m[b] {
			if m[a] > m[b] {
				return -1
			}
			return 1
		}
		return strings.Compare(a, b)
	})
	if len(keys) > n {
		keys = keys[:n]
	}
	if len(keys) == 0 {
		return "-"
	}
	return strings.Join(keys, ",")
}
