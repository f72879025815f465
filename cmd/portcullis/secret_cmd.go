package main

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/portcullis-dev/portcullis/internal/ops"
	"github.com/portcullis-dev/portcullis/internal/secret"
)

func secretCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "secret", Short: "Upstream credentials in the encrypted secret store (used with from_secret)"}
	var src source
	var by string
	set := &cobra.Command{
		Use:   "set NAME < value",
		Short: "Store a secret, read from standard input (never from the command line)",
		Args:  cobra.ExactArgs(1),
		RunE: src.run(func(cmd *cobra.Command, args []string, o *ops.Ops) error {
			b, err := io.ReadAll(io.LimitReader(cmd.InOrStdin(), secret.MaxValueBytes+1))
			if err != nil {
				return err
			}
			v := []byte(strings.TrimRight(string(b), "\r\n"))
			if len(v) == 0 {
				return errors.New("no value on standard input")
			}
			who, err := actor(by)
			if err != nil {
				return err
			}
			if err := o.SetSecret(cmd.Context(), args[0], v, who); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "secret %s stored (sealed)\n", args[0])
			return nil
		}),
	}
	src.flags(set)
	set.Flags().StringVar(&by, "by", "", "who sets it (default: $USER)")
	var lsrc source
	list := &cobra.Command{
		Use:   "list",
		Short: "List secret names (never values)",
		Args:  cobra.NoArgs,
		RunE: lsrc.run(func(cmd *cobra.Command, _ []string, o *ops.Ops) error {
			names, err := o.SecretNames(cmd.Context())
			if err != nil {
				return err
			}
			for _, n := range names {
				fmt.Fprintln(cmd.OutOrStdout(), n)
			}
			return nil
		}),
	}
	lsrc.flags(list)
	cmd.AddCommand(set, list)
	return cmd
}
