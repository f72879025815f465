package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"

	"github.com/spf13/cobra"

	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/replay"
	"github.com/portcullis-dev/portcullis/internal/screen"
)

func evalCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "eval",
		Short: "Measure detection and containment on labelled corpora",
	}
	cmd.AddCommand(evalScreenCmd(), evalToolsCmd(), evalAgentDojoCmd(), evalTrajectoriesCmd())
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
many attacks it detects and how many benign texts it flags, the score threshold used, and
the throughput of the run (records/s and MB/s of text screened). For personal data with
entity spans it also prints span-level precision, recall and F1. A corpus whose records
carry no text (tool definitions, agent trajectories) or no records is refused.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if corpus == "" {
				return fmt.Errorf("--corpus is required")
			}
			recs, err := readCorpus(corpus, screen.ShapeText)
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

// evalCommandFor names the eval subcommand that reads records of a shape.
var evalCommandFor = map[string]string{screen.ShapeText: "eval screen", screen.ShapeTool: "eval tools"}

// readCorpus reads a corpus whose records must be of the given shape
// (screen.Shape*), and refuses an empty one or one of another kind,
// naming the command that reads it.
func readCorpus(path, shape string) ([]screen.Record, error) {
	recs, err := screen.ReadCorpus(path)
	if err != nil {
		return nil, err
	}
	if err := screen.CheckShape(recs, shape); err != nil {
		return nil, withEvalHint(path, evalCommandFor[shape], fmt.Errorf("%s: %w", path, err))
	}
	return recs, nil
}

// withEvalHint adds to err, when the corpus at path is of a kind that
// another eval subcommand than self reads, the command to use instead.
func withEvalHint(path, self string, err error) error {
	other := ""
	if recs, rerr := screen.ReadCorpus(path); rerr == nil && len(recs) > 0 && recs[0].Shape() != "" {
		other = evalCommandFor[recs[0].Shape()]
	} else if _, terr := replay.ReadTrajectories(path); terr == nil {
		other = "eval trajectories"
	}
	if other == "" || other == self {
		return err
	}
	return fmt.Errorf("%w: use `portcullis %s`", err, other)
}

func printReport(w io.Writer, corpus string, rep *screen.Report) {
	fmt.Fprintf(w, "corpus %s: %d records, detector %s\nthreshold %s\n", corpus, rep.Records, rep.Detector, rep.Threshold)
	t := rep.Throughput
	fmt.Fprintf(w, "throughput %.0f records/s, %.2f MB/s (%.2f MB of text screened in %.2fs, this run)\n\n",
		t.RecordsPerSecond, t.MBPerSecond, float64(t.Bytes)/1e6, t.Seconds)
	printRows(w, append(rep.Categories, rep.Total))
	if len(rep.Entities) > 0 {
		fmt.Fprintln(w, "\nentity spans (records listing their entities):")
		tw := newTable(w, "TYPE\tTP\tFP\tFN\tPRECISION\tRECALL\tF1")
		for _, e := range rep.Entities {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%.3f\t%.3f\t%.3f\n", e.Type, e.TP, e.FP, e.FN, e.Precision, e.Recall, e.F1)
		}
		tw.Flush()
	}
}

// printRows prints category rows as a table.
func printRows(w io.Writer, rows []screen.CategoryRow) {
	tw := newTable(w, "CATEGORY\tATTACKS\tDETECTED\tRATE\tBENIGN\tFLAGGED\tFP RATE")
	rate := func(of int, r float64) string {
		if of == 0 {
			return "-"
		}
		return fmt.Sprintf("%.1f%%", 100*r)
	}
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%d\t%d\t%s\n", r.Category, r.Attacks, r.Detected, rate(r.Attacks, r.DetectionRate),
			r.Benign, r.Flagged, rate(r.Benign, r.FPRate))
	}
	tw.Flush()
}

func evalToolsCmd() *cobra.Command {
	var corpus string
	var asJSON, verbose bool
	cmd := &cobra.Command{
		Use:   "tools --corpus FILE",
		Short: "Screen a corpus of tool definitions for poisoning: detection and false-positive rate per category",
		Long: `Reads tool definitions ({"server", "tool", "description", "input_schema", "label",
"category"} lines, gzipped or not) and runs the checks that block automatic approval of a
tool: injection techniques, invisible characters, invocation steering, preference
manipulation, out-of-scope parameters, harmful capabilities, exfiltration URLs, and names
that shadow another server's tool. Attacks whose malice is only in the server's code
(category code_level/*) are totalled apart.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if corpus == "" {
				return fmt.Errorf("--corpus is required")
			}
			recs, err := readCorpus(corpus, screen.ShapeTool)
			if err != nil {
				return err
			}
			rep := screen.EvaluateTools(recs)
			w := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(w)
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			fmt.Fprintf(w, "corpus %s: %d tool definitions\n\n", corpus, rep.Records)
			printRows(w, append(rep.Categories, rep.DescriptionLevel, rep.CodeLevel))
			fmt.Fprintln(w, "\nfindings by rule:")
			for _, k := range sortedRuleKeys(rep.Rules) {
				fmt.Fprintf(w, "  %-26s %d\n", k, rep.Rules[k])
			}
			if verbose {
				fmt.Fprintln(w, "\nbenign tools flagged:")
				for _, r := range recs {
					if !r.Attack() {
						if s := screen.Explain(r); s != "" {
							fmt.Fprintf(w, "%s/%s\n%s", r.Server, r.Tool, s)
						}
					}
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&corpus, "corpus", "", "JSONL corpus of tool definitions (.jsonl or .jsonl.gz)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "also list the benign tools flagged, with their findings")
	return cmd
}

func sortedRuleKeys(m map[string]int) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func evalAgentDojoCmd() *cobra.Command {
	var suite, cfgPath, mode, agent, screening string
	var limit int
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "agentdojo --suite DIR --config CONFIG",
		Short: "Replay an AgentDojo suite's attacks through a real gateway: utility, attack success, what stopped each attack",
		Long: `Assume-breach replay (docs/evaluation.md). A real MCP upstream serves the suite's tools
with their recorded outputs (the attack text substituted at the injection vectors); a client
plays the fully compromised agent: for every user task × injection task pair it issues the
user's calls and, after the injected output, every call of the attacker's task. The gateway is
built from CONFIG, whose upstream named like the suite directory (workspace, slack, ...) is
pointed at the replay server. Held calls are approved by the replay and counted.

--mode agent uses a plain agent token; --mode task starts a task per user task, scoped to the
tools that task needs, with the user's request as its purpose; --mode both runs both.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if suite == "" || cfgPath == "" {
				return fmt.Errorf("--suite and --config are required")
			}
			s, err := replay.LoadSuite(suite)
			if err != nil {
				return err
			}
			cfg, err := loadEvalConfig(cfgPath, screening)
			if err != nil {
				return err
			}
			return runModes(cmd, mode, asJSON, func(m string) (*replay.Report, error) {
				return replay.Run(cmd.Context(), replay.Options{Suite: s, Config: cfg, Mode: m, Agent: agent, Limit: limit})
			})
		},
	}
	cmd.Flags().StringVar(&suite, "suite", "", "AgentDojo suite directory (../shared/agentdojo/workspace)")
	cmd.Flags().StringVar(&cfgPath, "config", "", "the deployer's gateway configuration for the suite")
	cmd.Flags().StringVar(&mode, "mode", "both", "agent, task or both")
	cmd.Flags().StringVar(&agent, "agent", "", "the agent to act as (default: the configuration's first)")
	cmd.Flags().IntVar(&limit, "limit", 0, "replay only the first N pairs")
	cmd.Flags().StringVar(&screening, "screening", "config", "config (the configuration's rules) or off (no screening rule: what stops attacks without any detector)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the reports as JSON")
	return cmd
}

func evalTrajectoriesCmd() *cobra.Command {
	var corpus, cfgPath, mode, screening string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "trajectories --corpus FILE --config CONFIG",
		Short: "Replay real agents' next actions after an injected tool output: share of hijacked actions stopped, of benign ones let through",
		Long: `Reads InjecAgent trajectories (../shared/corpora/injecagent_trajectories) and, through a real
gateway built from CONFIG (its upstream named "injecagent" is pointed at a replay server
serving every tool the corpus names), replays each: the user's tool call answered with the
injected response, then the action the agent took next, and for data-stealing cases the
sending step that followed. --mode task scopes each session to the user's tool with the user's
request as the task's purpose; --mode both runs both.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if corpus == "" || cfgPath == "" {
				return fmt.Errorf("--corpus and --config are required")
			}
			recs, err := replay.ReadTrajectories(corpus)
			if err != nil {
				return withEvalHint(corpus, "eval trajectories", err)
			}
			cfg, err := loadEvalConfig(cfgPath, screening)
			if err != nil {
				return err
			}
			return runModes(cmd, mode, asJSON, func(m string) (*replay.TrajectoryReport, error) {
				return replay.RunTrajectories(cmd.Context(), recs, cfg, m)
			})
		},
	}
	cmd.Flags().StringVar(&corpus, "corpus", "", "trajectories corpus (.jsonl or .jsonl.gz)")
	cmd.Flags().StringVar(&cfgPath, "config", "", "the gateway configuration (upstream named injecagent)")
	cmd.Flags().StringVar(&screening, "screening", "config", "config (the configuration's rules) or off (no screening rule)")
	cmd.Flags().StringVar(&mode, "mode", "both", "agent, task or both")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the reports as JSON")
	return cmd
}

// loadEvalConfig loads a replay's configuration; screening "off" removes
// every screening rule, so that nothing a detector finds can stop a call.
func loadEvalConfig(path, screening string) (*config.Config, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	switch screening {
	case "config":
	case "off":
		cfg.Screening.Rules = &[]config.ScreeningRule{}
	default:
		return nil, fmt.Errorf("--screening: %q is not config or off", screening)
	}
	return cfg, nil
}

// runModes runs a replay once per credential mode ("both": agent, then
// task) and prints each report as it comes, or all of them as JSON.
func runModes[R interface{ Print(io.Writer) }](cmd *cobra.Command, mode string, asJSON bool, run func(mode string) (R, error)) error {
	modes := []string{mode}
	if mode == "both" {
		modes = []string{replay.ModeAgent, replay.ModeTask}
	}
	var reps []R
	w := cmd.OutOrStdout()
	for _, m := range modes {
		rep, err := run(m)
		if err != nil {
			return err
		}
		reps = append(reps, rep)
		if !asJSON {
			rep.Print(w)
			fmt.Fprintln(w)
		}
	}
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(reps)
	}
	return nil
}
