package main

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/portcullis-dev/portcullis/internal/screen"
)

func evalCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "eval",
		Short: "Measure detection and containment on labelled corpora",
	}
	cmd.AddCommand(evalScreenCmd())
	return cmd
}

func evalScreenCmd() *cobra.Command {
	var corpus, detector string
	var threshold float64
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "screen --corpus FILE",
		Short: "Run a content detector over a JSONL corpus (gzipped or not): detection and false-positive rate per category",
		Long: `Reads a corpus of {"text", "label": "attack"|"benign", "category"} lines and runs a
detector over every text: prompt_injection (default for most corpora), secret (gitleaks'
rule tests), personal_data (Presidio's tests) or exfiltration. Prints, per category, how
many attacks it detects and how many benign texts it flags, and the score threshold used.
For personal data with entity spans it also prints span-level precision, recall and F1.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if corpus == "" {
				return fmt.Errorf("--corpus is required")
			}
			recs, err := screen.ReadCorpus(corpus)
			if err != nil {
				return err
			}
			if detector == "" {
				detector = screen.DetectorFor(recs)
			}
			rep, err := screen.Evaluate(recs, detector, threshold)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			printReport(cmd.OutOrStdout(), corpus, rep)
			return nil
		},
	}
	cmd.Flags().StringVar(&corpus, "corpus", "", "JSONL corpus file (.jsonl or .jsonl.gz)")
	cmd.Flags().StringVar(&detector, "detector", "", "prompt_injection, secret, personal_data or exfiltration (default: from the corpus' sources)")
	cmd.Flags().Float64Var(&threshold, "threshold", 0, "injection score threshold (default: the model's)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	return cmd
}

func printReport(w io.Writer, corpus string, rep *screen.Report) {
	fmt.Fprintf(w, "corpus %s: %d records, detector %s\nthreshold %s\n\n", corpus, rep.Records, rep.Detector, rep.Threshold)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CATEGORY\tATTACKS\tDETECTED\tRATE\tBENIGN\tFLAGGED\tFP RATE")
	rate := func(n, of int, r float64) string {
		if of == 0 {
			return "-"
		}
		return fmt.Sprintf("%.1f%%", 100*r)
	}
	for _, r := range append(rep.Categories, rep.Total) {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%d\t%d\t%s\n", r.Category, r.Attacks, r.Detected, rate(r.Detected, r.Attacks, r.DetectionRate),
			r.Benign, r.Flagged, rate(r.Flagged, r.Benign, r.FPRate))
	}
	tw.Flush()
	if len(rep.Entities) > 0 {
		fmt.Fprintln(w, "\nentity spans (records listing their entities):")
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "TYPE\tTP\tFP\tFN\tPRECISION\tRECALL\tF1")
		for _, e := range rep.Entities {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%.3f\t%.3f\t%.3f\n", e.Type, e.TP, e.FP, e.FN, e.Precision, e.Recall, e.F1)
		}
		tw.Flush()
	}
}
