package main

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/mod/sumdb/note"

	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/identity"
	"github.com/portcullis-dev/portcullis/internal/ops"
	"github.com/portcullis-dev/portcullis/internal/policy"
	"github.com/portcullis-dev/portcullis/internal/store"
	"github.com/portcullis-dev/portcullis/internal/toolreg"
)

func policyCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "policy", Short: "Cedar policies: validate, test, explain, sign, history, rollback"}
	cmd.AddCommand(policyValidateCmd(), policySchemaCmd(), policyTestCmd(), policyExplainCmd(), policySignCmd(), policyKeygenCmd(), policyRollbackCmd(), policyHistoryCmd())
	return cmd
}

func compilePaths(paths []string) (*policy.Set, error) {
	srcs, err := policy.ReadSources(paths)
	if err != nil {
		return nil, err
	}
	return policy.Compile(srcs)
}

func policyValidateCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "validate PATH...",
		Short: "Parse and validate policy files or directories against the Portcullis schema",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			set, err := compilePaths(args)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d policies valid, version %s\n", set.Len(), set.Version())
			return nil
		},
	}
}

func policySchemaCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "schema",
		Short: "Print the Cedar schema policies are validated against",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := cmd.OutOrStdout().Write(policy.Schema())
			return err
		},
	}
}

func policyTestCmd() *cobra.Command {
	var paths []string
	cmd := &cobra.Command{
		Use:   "test CASES.yaml...",
		Short: "Run policy test cases (request → expected decision); exit 1 if any fails",
		Long: "Each file lists cases: agent, roles, action, resource, arguments, and the\n" +
			"expected decision (allow or deny), optionally the policies that must decide.\n" +
			"The bundle is the file's own `policies:` (relative to it) or --policies.",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			w := cmd.OutOrStdout()
			failed, total := 0, 0
			for _, f := range args {
				cf, err := policy.LoadCases(f)
				if err != nil {
					return err
				}
				ps := cf.Policies
				if len(paths) > 0 {
					ps = paths
				}
				if len(ps) == 0 {
					return fmt.Errorf("%s: no policies (give `policies:` in the file or --policies)", f)
				}
				set, err := compilePaths(ps)
				if err != nil {
					return err
				}
				results, err := cf.Run(policy.NewEngine(set))
				if err != nil {
					return err
				}
				for _, r := range results {
					total++
					if r.Pass {
						fmt.Fprintf(w, "PASS  %s: %s\n", f, r.Case.Name)
						continue
					}
					failed++
					fmt.Fprintf(w, "FAIL  %s: %s: %s\n", f, r.Case.Name, strings.TrimSpace(r.Why))
				}
			}
			fmt.Fprintf(w, "%d passed, %d failed\n", total-failed, failed)
			if failed > 0 {
				return fmt.Errorf("%d policy test cases failed", failed)
			}
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&paths, "policies", nil, "policy files or directories (overrides the files' own)")
	return cmd
}

func policyExplainCmd() *cobra.Command {
	var paths, roles, classes []string
	var agent, action, kind, id, upstream, args string
	var readOnly, destructive, openWorld bool
	var src source
	cmd := &cobra.Command{
		Use:   "explain (--config FILE | --policies PATH) --agent A --resource ID [flags]",
		Short: "Show the decision for one request and which policies made it, with their text",
		Long: "Show the decision for one request and which policies made it. With --config the\n" +
			"configured bundle decides, the agent's roles come from the configuration, and the\n" +
			"tool's hints from its recorded definition and its classification from tools:\n" +
			"flags given explicitly still win. Without it, give --policies, roles and hints.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if agent == "" || action == "" || id == "" {
				return errors.New("--agent, --action and --resource are required")
			}
			var set *policy.Set
			var err error
			switch {
			case len(paths) > 0:
				set, err = compilePaths(paths)
			case src.config != "" || src.dev:
				var cfg *config.Config
				if cfg, err = src.load(); err != nil {
					return err
				}
				if set, _, err = ops.LoadBundle(cfg); err != nil {
					return err
				}
				err = fromConfig(cmd, cfg, agent, id, &roles, &classes, &readOnly, &destructive, &openWorld)
			default:
				return errors.New("give --config FILE (the configured bundle, roles and tool hints) or --policies PATH")
			}
			if err != nil {
				return err
			}
			a, err := policy.Arguments(json.RawMessage(args))
			if err != nil {
				return fmt.Errorf("--args: %w", err)
			}
			if upstream == "" {
				upstream, _, _ = strings.Cut(id, "__")
			}
			in := &policy.Input{
				Principal: &identity.Principal{Agent: agent, Roles: roles}, Action: action, Arguments: a, Method: "explain",
				Target: policy.Target{Kind: kind, ID: id, Upstream: upstream, ReadOnly: readOnly, Destructive: destructive, OpenWorld: openWorld, Classes: classes},
			}
			_, text := policy.NewEngine(set).Explain(in)
			fmt.Fprint(cmd.OutOrStdout(), text)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&paths, "policies", nil, "policy files or directories")
	f.StringVar(&agent, "agent", "", "agent name")
	f.StringSliceVar(&roles, "role", nil, "agent roles")
	f.StringVar(&action, "action", "call_tool", "Cedar action")
	f.StringVar(&kind, "kind", policy.KindTool, "resource kind: Tool, Resource, Prompt")
	f.StringVar(&id, "resource", "", "resource ID (upstream__tool, URI, upstream__prompt)")
	f.StringVar(&upstream, "upstream", "", "upstream (default: the prefix of --resource)")
	f.StringVar(&args, "args", "{}", "arguments as a JSON object")
	f.BoolVar(&readOnly, "read-only", false, "the tool's readOnlyHint")
	f.BoolVar(&destructive, "destructive", false, "the tool's destructiveHint")
	f.BoolVar(&openWorld, "open-world", false, "the tool's openWorldHint")
	f.StringSliceVar(&classes, "class", nil, "the tool's classification (default: derived from the hints)")
	src.flags(cmd)
	return cmd
}

// fromConfig fills what explain did not get by flag from the configuration
// and the data directory: the agent's roles, the tool's classification
// (tools:) and its hints (its latest approved definition).
func fromConfig(cmd *cobra.Command, cfg *config.Config, agent, tool string, roles, classes *[]string, readOnly, destructive, openWorld *bool) error {
	f := cmd.Flags()
	if !f.Changed("role") {
		a, ok := cfg.Agent(agent)
		if !ok {
			return fmt.Errorf("%w: %q", config.ErrUnknownAgent, agent)
		}
		*roles = a.Roles
	}
	if !f.Changed("class") {
		for _, t := range cfg.Tools {
			if t.Name == tool {
				*classes = t.Classification
			}
		}
	}
	if f.Changed("read-only") || f.Changed("destructive") || f.Changed("open-world") {
		return nil
	}
	if !ops.HasStore(cfg) {
		return nil // no data directory here: the hints stay as given
	}
	o, err := ops.Open(cfg)
	if err != nil {
		return err
	}
	defer o.Close()
	up, name, _ := strings.Cut(tool, config.NamespaceSeparator)
	pins, err := o.ListPins(cmd.Context(), up)
	if err != nil {
		return err
	}
	for _, p := range pins {
		if p.Name != name || p.State != toolreg.Approved {
			continue
		}
		var def struct {
			Annotations struct {
				ReadOnly    bool  `json:"readOnlyHint"`
				Destructive *bool `json:"destructiveHint"`
				OpenWorld   *bool `json:"openWorldHint"`
			} `json:"annotations"`
		}
		if err := json.Unmarshal(p.Definition, &def); err != nil {
			return fmt.Errorf("recorded definition of %s: %w", tool, err)
		}
		a := def.Annotations
		*readOnly = a.ReadOnly
		// MCP's defaults, as the gateway reads them: destructive and
		// open-world unless the server says otherwise.
		*destructive = a.Destructive == nil || *a.Destructive
		*openWorld = a.OpenWorld == nil || *a.OpenWorld
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "as configured: roles %v, classification %v, read-only %v, destructive %v, open-world %v\n", *roles, *classes, *readOnly, *destructive, *openWorld)
	return nil
}

func policySignCmd() *cobra.Command {
	var key, out string
	cmd := &cobra.Command{
		Use:   "sign --key SIGNER.key --out bundle.sig PATH...",
		Short: "Sign a policy bundle (its version) as a C2SP signed note",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if key == "" || out == "" {
				return errors.New("--key and --out are required")
			}
			set, err := compilePaths(args)
			if err != nil {
				return err
			}
			sk, err := os.ReadFile(key)
			if err != nil {
				return err
			}
			sig, err := policy.SignBundle(set.Version(), string(sk))
			if err != nil {
				return err
			}
			if err := os.WriteFile(out, sig, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "signed %s (%d policies) into %s\n", set.Version(), set.Len(), out)
			return nil
		},
	}
	cmd.Flags().StringVar(&key, "key", "", "signer key file (made by portcullis policy keygen)")
	cmd.Flags().StringVar(&out, "out", "", "signature file to write")
	return cmd
}

func policyKeygenCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "keygen NAME PREFIX",
		Short: "Create a policy signing key pair: PREFIX.key (secret, 0600) and PREFIX.pub (for policy.trusted_keys)",
		Long: "Create a policy signing key pair (a C2SP signed-note key). NAME is the key's name,\n" +
			"which every signature carries and verifiers show (e.g. security-team); PREFIX is\n" +
			"where the keys are written: PREFIX.key (the secret key, mode 0600) and PREFIX.pub\n" +
			"(the verifier key, for policy.trusted_keys).",
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			skey, vkey, err := note.GenerateKey(rand.Reader, args[0])
			if err != nil {
				return err
			}
			f, err := os.OpenFile(args[1]+".key", os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return err
			}
			if _, err := f.WriteString(skey + "\n"); err != nil {
				f.Close()
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
			if err := os.WriteFile(args[1]+".pub", []byte(vkey+"\n"), 0o644); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s.key and %s.pub\n", args[1], args[1])
			return nil
		},
	}
}

func policyRollbackCmd() *cobra.Command {
	var src source
	var to, by, why string
	var release bool
	cmd := &cobra.Command{
		Use:   "rollback [--to DIGEST] --reason TEXT",
		Short: "Serve a kept policy bundle instead of the files (default: the one before the last good), until --release",
		Long: `Every bundle the gateway loads is kept in its store under its digest
("portcullis policy history" lists them). A rollback points the gateway at one
of them: a running gateway swaps it in within its reload interval, and serves it
across restarts, whatever the files say, until "portcullis policy rollback
--release" lets the files apply again. Both are audited (policy_change events
bundle_rolled_back, bundle_rollback_released) with the person's name.`,
		Args: cobra.NoArgs,
		RunE: src.run(func(cmd *cobra.Command, _ []string, o *ops.Ops) error {
			who, err := actor(by)
			if err != nil {
				return err
			}
			if release {
				if to != "" {
					return errors.New("--release takes no --to")
				}
				if err := o.ReleaseRollback(cmd.Context(), who, why); err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), "rollback released: the gateway serves its configured files again")
				return nil
			}
			if why == "" {
				return errors.New("--reason is required: why the bundle in force is rolled back")
			}
			v, err := o.RollbackPolicy(cmd.Context(), to, who, why)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "rolled back to %s: a running gateway serves it within its reload interval, and across restarts until --release\n", v)
			return nil
		}),
	}
	src.flags(cmd)
	cmd.Flags().StringVar(&to, "to", "", "the kept bundle's digest (sha256:..., or a unique prefix of 8 hex digits or more)")
	cmd.Flags().BoolVar(&release, "release", false, "end the rollback: the files apply again")
	cmd.Flags().StringVar(&by, "by", "", "who rolls back (default: $USER)")
	cmd.Flags().StringVar(&why, "reason", "", "why (recorded in the audit log)")
	return cmd
}

func policyHistoryCmd() *cobra.Command {
	var src source
	cmd := &cobra.Command{
		Use:   "history",
		Short: "The policy bundles the gateway kept, oldest first, with the last good one and any rollback",
		Args:  cobra.NoArgs,
		RunE: src.run(func(cmd *cobra.Command, _ []string, o *ops.Ops) error {
			st := o.Store()
			kept, err := st.Bundles(cmd.Context())
			if err != nil {
				return err
			}
			lg, _, err := st.PolicyPointer(cmd.Context(), store.PolicyLastGood)
			if err != nil {
				return err
			}
			rb, rolled, err := st.PolicyPointer(cmd.Context(), store.PolicyRollback)
			if err != nil {
				return err
			}
			w := newTable(cmd.OutOrStdout(), "KEPT\tVERSION\tSTATE")
			for _, b := range kept {
				var state []string
				if b.Version == lg.Version {
					state = append(state, "last good (files)")
				}
				if rolled && b.Version == rb.Version {
					state = append(state, fmt.Sprintf("ROLLED BACK TO by %s at %s: served", rb.By, rb.Time.Local().Format(time.DateTime)))
				}
				fmt.Fprintf(w, "%s\t%s\t%s\n", b.Saved.Local().Format(time.DateTime), b.Version, orDash(strings.Join(state, "; ")))
			}
			return w.Flush()
		}),
	}
	src.flags(cmd)
	return cmd
}
