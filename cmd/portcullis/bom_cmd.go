package main

import (
	"encoding/json"
	"os"

	"github.com/spf13/cobra"

	"github.com/portcullis-dev/portcullis/internal/mcpproxy"
	"github.com/portcullis-dev/portcullis/internal/ops"
)

func bomCmd() *cobra.Command {
	var src source
	var out string
	cmd := &cobra.Command{
		Use:   "bom",
		Short: "Write the AI-BOM (CycloneDX 1.6 JSON): upstream servers, packages, hashes, tools and their digests",
		Args:  cobra.NoArgs,
		RunE: src.run(func(cmd *cobra.Command, _ []string, o *ops.Ops) error {
			b, err := o.BOM(cmd.Context(), mcpproxy.Version)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if out != "" {
				f, err := os.Create(out)
				if err != nil {
					return err
				}
				defer f.Close()
				w = f
			}
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			return enc.Encode(b)
		}),
	}
	src.flags(cmd)
	cmd.Flags().StringVarP(&out, "output", "o", "", "write to this file (default: stdout)")
	return cmd
}
