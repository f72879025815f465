package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/portcullis-dev/portcullis/internal/ops"
	"github.com/portcullis-dev/portcullis/internal/toolreg"
)

func toolsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "tools", Short: "Pinned tool definitions: list, diff, approve, reject"}
	var lsrc source
	var upstream string
	list := &cobra.Command{
		Use:   "list",
		Short: "List recorded tool definitions and their state",
		Args:  cobra.NoArgs,
		RunE: lsrc.run(func(cmd *cobra.Command, _ []string, o *ops.Ops) error {
			pins, err := o.ListPins(cmd.Context(), upstream)
			if err != nil {
				return err
			}
			w := newTable(cmd.OutOrStdout(), "UPSTREAM\tTOOL\tSTATE\tDIGEST\tSEEN\tREASON\tBY")
			for _, p := range pins {
				fmt.Fprintf(w, "%s\t%s\t%s\t%.19s…\t%s\t%s\t%s\n", p.Upstream, p.Name, p.State, p.Digest, p.SeenAt.Local().Format(time.DateTime), p.Reason, p.DecidedBy)
			}
			return w.Flush()
		}),
	}
	lsrc.flags(list)
	list.Flags().StringVar(&upstream, "upstream", "", "only this upstream")

	var dsrc source
	diff := &cobra.Command{
		Use:   "diff UPSTREAM TOOL",
		Short: "Show how a quarantined definition differs from the approved one",
		Args:  cobra.ExactArgs(2),
		RunE: dsrc.run(func(cmd *cobra.Command, args []string, o *ops.Ops) error {
			d, err := o.PinDiff(cmd.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			fmt.Fprint(cmd.OutOrStdout(), d)
			return nil
		}),
	}
	dsrc.flags(diff)
	cmd.AddCommand(list, diff, pinDecisionCmd(toolreg.Approved), pinDecisionCmd(toolreg.Rejected), manifestSignCmd(), manifestVerifyCmd())
	return cmd
}

func manifestSignCmd() *cobra.Command {
	var src source
	var key, out string
	cmd := &cobra.Command{
		Use:   "sign UPSTREAM --key SIGNER.key --out UPSTREAM.manifest",
		Short: "Sign a server manifest: the upstream's launch spec and its approved tool digests",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if key == "" || out == "" {
				return errors.New("--key and --out are required")
			}
			o, err := src.open()
			if err != nil {
				return err
			}
			defer o.Close()
			m, err := o.BuildManifest(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			sk, err := os.ReadFile(key)
			if err != nil {
				return err
			}
			msg, err := toolreg.SignManifest(m, string(sk))
			if err != nil {
				return err
			}
			if err := os.WriteFile(out, msg, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "signed %s: %d tools into %s\n", args[0], len(m.Tools), out)
			return nil
		},
	}
	src.flags(cmd)
	cmd.Flags().StringVar(&key, "key", "", "signer key file (made by portcullis policy keygen)")
	cmd.Flags().StringVar(&out, "out", "", "manifest file to write")
	return cmd
}

func manifestVerifyCmd() *cobra.Command {
	var key string
	cmd := &cobra.Command{
		Use:   "verify MANIFEST --key SIGNER.pub",
		Short: "Verify a server manifest and print what it pins",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if key == "" {
				return errors.New("--key is required")
			}
			kb, err := os.ReadFile(key)
			if err != nil {
				return err
			}
			msg, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			m, err := toolreg.OpenManifest(msg, []string{string(kb)})
			if err != nil {
				return err
			}
			fmt.Fprint(cmd.OutOrStdout(), "verified\n"+m.Text())
			return nil
		},
	}
	cmd.Flags().StringVar(&key, "key", "", "the signer's public key file")
	return cmd
}

func pinDecisionCmd(state string) *cobra.Command {
	var src source
	var by string
	var all bool
	verb := map[string]string{toolreg.Approved: "approve", toolreg.Rejected: "reject"}[state]
	cmd := &cobra.Command{
		Use:   verb + " UPSTREAM TOOL | UPSTREAM --all",
		Short: verb + " the quarantined definition of a tool (review it with `tools diff` first)",
		Long: verb + " the quarantined definition of a tool, or with --all every quarantined\n" +
			"definition of an upstream (for a first start with pinning: strict, after reviewing\n" +
			"`tools list`). --all leaves out definitions with findings: decide those one by one.",
		Args: cobra.RangeArgs(1, 2),
		RunE: src.run(func(cmd *cobra.Command, args []string, o *ops.Ops) error {
			by, err := actor(by)
			if err != nil {
				return err
			}
			names := args[1:]
			switch {
			case all && len(args) == 2:
				return errors.New("give a tool or --all, not both")
			case all:
				if names, err = quarantinedWithoutFindings(cmd, o, args[0]); err != nil {
					return err
				}
			case len(args) == 1:
				return errors.New("give the tool, or --all for every quarantined definition of the upstream")
			}
			for _, name := range names {
				p, err := o.DecidePin(cmd.Context(), args[0], name, state, by)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s/%s %s %s\n", p.Upstream, p.Name, p.Digest, p.State)
			}
			return nil
		}),
	}
	src.flags(cmd)
	cmd.Flags().StringVar(&by, "by", "", "who decides (default: $USER)")
	cmd.Flags().BoolVar(&all, "all", false, "every quarantined definition of the upstream without findings")
	return cmd
}

// quarantinedWithoutFindings names the quarantined tools of upstream whose
// definitions the checks found nothing in, and says which it leaves out.
func quarantinedWithoutFindings(cmd *cobra.Command, o *ops.Ops, upstream string) ([]string, error) {
	pins, err := o.ListPins(cmd.Context(), upstream)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, p := range pins {
		if p.State != toolreg.Quarantined {
			continue
		}
		if strings.Contains(p.Reason, "findings:") {
			fmt.Fprintf(cmd.ErrOrStderr(), "left out %s/%s: %s\n", p.Upstream, p.Name, p.Reason)
			continue
		}
		names = append(names, p.Name)
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("upstream %q has no quarantined definition without findings", upstream)
	}
	return names, nil
}
