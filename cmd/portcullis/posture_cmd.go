package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/ops"
	"github.com/portcullis-dev/portcullis/internal/policy"
	"github.com/portcullis-dev/portcullis/internal/posture"
)

// ExitBelowTarget is `posture`'s exit status when a capability is below
// its target tier (--min-tier, --targets).
const ExitBelowTarget = 4

func postureCmd() *cobra.Command {
	var src source
	var format, minTier, targetsFile string
	var window time.Duration
	cmd := &cobra.Command{
		Use:   "posture",
		Short: "The framework tier each capability reaches, from the live configuration, policy and stored data, with its evidence, what the next tier needs, and the outcome metrics",
		Long: `Assess the 15 capabilities of the Zero Trust framework for agents (Foundation,
Enterprise, Advanced) from the configuration, the policy bundle and the data
directory: for each, the tier reached, the evidence, and what the next tier
needs; then the outcome metrics over the window (decisions, denials, holds,
explainability, coverage, alerts and triage, approval latency, dwell time,
detection speed, a daily trend).

With --min-tier or --targets, a capability below its target makes the command
exit with status 4 (for CI). docs/posture.md explains every check.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			all := posture.None
			if minTier != "" {
				t, err := posture.ParseTier(minTier)
				if err != nil {
					return err
				}
				all = t
			}
			var per map[string]posture.Tier
			if targetsFile != "" {
				b, err := os.ReadFile(targetsFile)
				if err != nil {
					return err
				}
				var raw map[string]string
				if err := yaml.UnmarshalStrict(b, &raw); err != nil {
					return fmt.Errorf("targets %s: %w", targetsFile, err)
				}
				if per, err = posture.ParseTargets(raw); err != nil {
					return err
				}
			}
			rep, err := assess(cmd, &src, window)
			if err != nil {
				return err
			}
			rep.SetTargets(all, per)
			out := cmd.OutOrStdout()
			switch format {
			case "table":
				err = rep.WriteText(out)
			case "json":
				err = rep.WriteJSON(out)
			case "html":
				err = rep.WriteHTML(out)
			default:
				return fmt.Errorf("--format %q: table, json or html", format)
			}
			if err != nil {
				return err
			}
			if below := rep.Below(); len(below) > 0 {
				var names []string
				for _, c := range below {
					names = append(names, fmt.Sprintf("%s (%s, target %s)", c.ID, c.Tier, c.Target))
				}
				return &exitStatus{code: ExitBelowTarget, msg: "below target: " + strings.Join(names, ", ")}
			}
			return nil
		},
	}
	src.flags(cmd)
	cmd.Flags().StringVar(&format, "format", "table", "table, json or html")
	cmd.Flags().StringVar(&minTier, "min-tier", "", "exit with status 4 if a capability is below this tier (F, E or A)")
	cmd.Flags().StringVar(&targetsFile, "targets", "", "a YAML or JSON file of capability ID to target tier (exit status 4 below one)")
	cmd.Flags().DurationVar(&window, "window", posture.DefaultWindow, "how far back the outcome metrics and recent activity count")
	return cmd
}

// assess gathers the facts the flags select and assesses them.
func assess(cmd *cobra.Command, src *source, window time.Duration) (*posture.Report, error) {
	cfg, err := src.load()
	if err != nil {
		return nil, err
	}
	set, err := bundleOf(src, cfg)
	if err != nil {
		return nil, err
	}
	o, err := ops.Open(cfg)
	if err != nil {
		return nil, err
	}
	defer o.Close()
	if window <= 0 {
		return nil, errors.New("--window must be positive")
	}
	f, err := posture.Gather(cmd.Context(), posture.Source{Config: cfg, ConfigPath: src.config, Dev: src.dev, Store: o.Store(), Policy: set, Window: window})
	if err != nil {
		return nil, err
	}
	return posture.Assess(f), nil
}

// bundleOf is the policy bundle the gateway would run with: the embedded
// default policy for --dev, else the configured one.
func bundleOf(src *source, cfg *config.Config) (*policy.Set, error) {
	if src.dev {
		return policy.Compile([]policy.Source{policy.DefaultSource()})
	}
	set, _, err := ops.LoadBundle(cfg)
	if err != nil {
		return nil, fmt.Errorf("policy bundle: %w", err)
	}
	return set, nil
}

func blastRadiusCmd() *cobra.Command {
	var src source
	var agent, task, format string
	var tools []string
	cmd := &cobra.Command{
		Use:   "blast-radius --agent NAME",
		Short: "What an agent can reach under the current policy: tools, upstreams, data classes, external destinations, money movement, delegation, approvals, and the lethal trifecta",
		Long: `Decide every known tool (the pinned definitions, and those the configuration
classifies) for the agent under the current policy bundle, with unknown
arguments and no session labels: allowed (nothing guards it), guarded (forbids
reading the arguments or session may refuse a call), conditional (some
arguments or contexts only), approval (held for a person), or denied. Then the
upstreams, data classes and external destinations that makes reachable, money
movement, the agents it may delegate to, the high-impact actions that need
approval and those that do not, and whether private data, untrusted content
and a way out are all within reach (the lethal trifecta), and whether a policy
on data-flow labels closes it. With --task (a started task's ID) or --tools,
only that task's tools.`,
		Args: cobra.NoArgs,
		RunE: src.run(func(cmd *cobra.Command, _ []string, o *ops.Ops) error {
			if agent == "" {
				return errors.New("--agent is required")
			}
			cfg := o.Config()
			set, err := bundleOf(&src, cfg)
			if err != nil {
				return err
			}
			var taskTools []string
			switch {
			case task != "" && len(tools) > 0:
				return errors.New("give --task or --tools, not both")
			case task != "":
				if taskTools, err = o.TaskTools(cmd.Context(), task); err != nil {
					return err
				}
			case len(tools) > 0:
				taskTools = tools
			}
			pins, err := o.Store().Pins(cmd.Context(), "")
			if err != nil {
				return err
			}
			r, ok := posture.BlastRadius(cfg, set, posture.KnownTools(cfg, pins), agent, taskTools, time.Now())
			if !ok {
				return fmt.Errorf("no agent %q in the configuration", agent)
			}
			out := cmd.OutOrStdout()
			switch format {
			case "json":
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(r)
			case "table":
				return writeReach(out, r, set.Version())
			}
			return fmt.Errorf("--format %q: table or json", format)
		}),
	}
	src.flags(cmd)
	cmd.Flags().StringVar(&agent, "agent", "", "the agent (required)")
	cmd.Flags().StringVar(&task, "task", "", "a started task's ID: only its tools")
	cmd.Flags().StringSliceVar(&tools, "tools", nil, "a task's tools (qualified names): only those")
	cmd.Flags().StringVar(&format, "format", "table", "table or json")
	return cmd
}

func writeReach(out io.Writer, r *posture.Reach, version string) error {
	fmt.Fprintf(out, "Blast radius of %s (roles %s) under policy %s: %d known tools", r.Agent, orDash(strings.Join(r.Roles, ", ")), version, r.Tools)
	if r.TaskTools != nil {
		fmt.Fprintf(out, ", a task of %d", len(r.TaskTools))
	}
	fmt.Fprintln(out)
	w := newTable(out, "\nTOOL\tUPSTREAM\tCLASSES\tDATA\tDECISION\tBY")
	for _, t := range r.Reachable {
		by := strings.Join(t.Policies, ", ")
		if len(t.Guards) > 0 {
			by += "; guards: " + strings.Join(t.Guards, ", ")
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", t.Name, t.Upstream, strings.Join(t.Classes, ","), orDash(strings.Join(t.Labels, ",")), t.Decision, orDash(by))
	}
	if err := w.Flush(); err != nil {
		return err
	}
	line := func(k string, v []string) { fmt.Fprintf(out, "%-22s %s\n", k, orDash(strings.Join(v, ", "))) }
	fmt.Fprintln(out)
	line("upstreams", r.Upstreams)
	line("data classes", r.DataClasses)
	line("external destinations", r.External)
	line("money movement", r.Money)
	line("may delegate to", r.Delegates)
	line("high-impact, approval", r.NeedApproval)
	line("high-impact, standing", r.StandingHighImpact)
	t := r.Trifecta
	state := "not within reach"
	switch {
	case t.Possible && t.Blocked:
		state = "within reach, closed by policy"
	case t.Possible:
		state = "POSSIBLE"
	}
	fmt.Fprintf(out, "%-22s %s: %s\n", "lethal trifecta", state, t.Why)
	if t.Possible {
		line("  private data", t.Private)
		line("  untrusted content", t.Exposure)
		line("  way out", t.Exfil)
	}
	return nil
}
