package main

import (
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/portcullis-dev/portcullis/internal/gateway"
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
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := lsrc.load()
			if err != nil {
				return err
			}
			pins, err := gateway.ListPins(cmd.Context(), cfg, upstream)
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "UPSTREAM\tTOOL\tSTATE\tDIGEST\tSEEN\tREASON\tBY")
			for _, p := range pins {
				fmt.Fprintf(w, "%s\t%s\t%s\t%.19s…\t%s\t%s\t%s\n", p.Upstream, p.Name, p.State, p.Digest, p.SeenAt.Local().Format(time.DateTime), p.Reason, p.DecidedBy)
			}
			return w.Flush()
		},
	}
	lsrc.flags(list)
	list.Flags().StringVar(&upstream, "upstream", "", "only this upstream")

	var dsrc source
	diff := &cobra.Command{
		Use:   "diff UPSTREAM TOOL",
		Short: "Show how a quarantined definition differs from the approved one",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := dsrc.load()
			if err != nil {
				return err
			}
			d, err := gateway.PinDiff(cmd.Context(), cfg, args[0], args[1])
			if err != nil {
				return err
			}
			fmt.Fprint(cmd.OutOrStdout(), d)
			return nil
		},
	}
	dsrc.flags(diff)
	cmd.AddCommand(list, diff, pinDecisionCmd(toolreg.Approved), pinDecisionCmd(toolreg.Rejected))
	return cmd
}

func pinDecisionCmd(state string) *cobra.Command {
	var src source
	var by string
	verb := map[string]string{toolreg.Approved: "approve", toolreg.Rejected: "reject"}[state]
	cmd := &cobra.Command{
		Use:   verb + " UPSTREAM TOOL",
		Short: verb + " the quarantined definition of a tool (review it with `tools diff` first)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := src.load()
			if err != nil {
				return err
			}
			if by == "" {
				by = os.Getenv("USER")
			}
			p, err := gateway.DecidePin(cmd.Context(), cfg, args[0], args[1], state, by)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s/%s %s %s\n", p.Upstream, p.Name, p.Digest, p.State)
			return nil
		},
	}
	src.flags(cmd)
	cmd.Flags().StringVar(&by, "by", "", "who decides (default: $USER)")
	return cmd
}
