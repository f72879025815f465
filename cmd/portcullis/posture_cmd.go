package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/mod/sumdb/note"
	"sigs.k8s.io/yaml"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/mcpproxy"
	"github.com/portcullis-dev/portcullis/internal/ops"
	"github.com/portcullis-dev/portcullis/internal/policy"
	"github.com/portcullis-dev/portcullis/internal/posture"
)

// ExitBelowTarget is `posture`'s exit status when a capability is below
// its target tier (--min-tier, --targets).
const ExitBelowTarget = 4

func postureCmd() *cobra.Command {
	var src source
	var format, minTier, targetsFile, framework, oscalOut string
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

With --framework (owasp-asi, nist-ai-rmf, nist-800-207, iso-42001, eu-ai-act,
soc2), the report is per control of that framework instead: each control
satisfied, partial or not, with the checks that evidence it.

With --oscal FILE, the assessment is also written as an OSCAL 1.1.2
assessment-results document, computed at a checkpoint of the audit log signed
for it, and FILE.sig holds a signed note over the document and that checkpoint
(the audit log's key: verify with "portcullis posture verify FILE --key
audit-log.pub").

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
			var fw *posture.Framework
			if framework != "" {
				f, err := posture.FrameworkByID(framework)
				if err != nil {
					return err
				}
				fw = &f
			}
			rep, err := assess(cmd, &src, window, oscalOut != "")
			if err != nil {
				return err
			}
			rep.SetTargets(all, per)
			out := cmd.OutOrStdout()
			switch {
			case fw != nil && format == "table":
				err = posture.WriteControls(out, *fw, rep.Evaluate(*fw))
			case fw != nil && format == "json":
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				err = enc.Encode(map[string]any{"framework": fw.ID, "title": fw.Title, "source": fw.Source, "note": posture.MappingNote, "controls": rep.Evaluate(*fw)})
			case fw != nil:
				return fmt.Errorf("--format %q with --framework: table or json", format)
			case format == "table":
				err = rep.WriteText(out)
			case format == "json":
				err = rep.WriteJSON(out)
			case format == "html":
				err = rep.WriteHTML(out)
			default:
				return fmt.Errorf("--format %q: table, json or html", format)
			}
			if err != nil {
				return err
			}
			if oscalOut != "" {
				if err := writeOSCAL(&src, rep, fw, oscalOut); err != nil {
					return err
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "OSCAL assessment results in %s, signed in %s.sig\n", oscalOut, oscalOut)
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
	cmd.Flags().StringVar(&framework, "framework", "", "report per control of a compliance framework: owasp-asi, nist-ai-rmf, nist-800-207, iso-42001, eu-ai-act or soc2")
	cmd.Flags().StringVar(&oscalOut, "oscal", "", "also write the assessment as a signed OSCAL assessment-results document to this file")
	cmd.AddCommand(postureVerifyCmd())
	return cmd
}

// writeOSCAL writes rep as OSCAL assessment results to path and a signed
// note over it (and the checkpoint it was computed at) to path.sig.
func writeOSCAL(src *source, rep *posture.Report, fw *posture.Framework, path string) error {
	cfg, err := src.load()
	if err != nil {
		return err
	}
	doc, err := rep.OSCAL(fw, mcpproxy.Version)
	if err != nil {
		return err
	}
	signer, _, err := audit.LoadOrCreateLogKey(filepath.Join(ops.DataDir(cfg), ops.KeysDir), cfg.Audit.Origin)
	if err != nil {
		return err
	}
	sig, err := posture.SignEvidence(doc, rep.Checkpoint, signer)
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, doc, 0o644); err != nil {
		return err
	}
	return os.WriteFile(path+".sig", sig, 0o644)
}

func postureVerifyCmd() *cobra.Command {
	var key, sigPath string
	cmd := &cobra.Command{
		Use:   "verify OSCAL.json --key LOG.pub",
		Short: "Verify a posture evidence document against its signature (the audit log's key), offline",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if key == "" {
				return errors.New("--key is required (the audit log's public key, keys/audit-log.pub in the data directory)")
			}
			if sigPath == "" {
				sigPath = args[0] + ".sig"
			}
			doc, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			sig, err := os.ReadFile(sigPath)
			if err != nil {
				return err
			}
			vkey, err := readKey(key, "", cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			v, err := note.NewVerifier(vkey)
			if err != nil {
				return fmt.Errorf("--key: %w", err)
			}
			text, err := posture.VerifyEvidence(doc, sig, note.VerifierList(v))
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "signature good (%s)\n%s", v.Name(), text)
			return nil
		},
	}
	cmd.Flags().StringVar(&key, "key", "", "the audit log's public key file")
	cmd.Flags().StringVar(&sigPath, "sig", "", "the signature (default: OSCAL.json.sig)")
	return cmd
}

// assess gathers the facts the flags select and assesses them (after
// signing a checkpoint of the audit log, with checkpoint: the evidence
// names the log's state it was computed at).
func assess(cmd *cobra.Command, src *source, window time.Duration, checkpoint bool) (*posture.Report, error) {
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
	if checkpoint {
		// Signed and stored first; publishing it (copies, the witness) may
		// fail without making the evidence less true.
		if _, err := o.Checkpoint(cmd.Context()); err != nil {
			fmt.Fprintf(cmd.ErrOrStderr(), "warning: audit checkpoint: %v\n", err)
		}
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
