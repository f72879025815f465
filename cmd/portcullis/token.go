package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/portcullis-dev/portcullis/internal/store"
)

func tokenCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "Agent tokens"}
	var src source
	var agent, admin string
	var ttl time.Duration
	var verbose bool
	var out, by string
	issue := &cobra.Command{
		Use:   "issue",
		Short: "Mint a short-lived token for a configured agent",
		Long: "Mint a short-lived EdDSA token for a configured agent, signed with the data\n" +
			"directory's key. The token is printed on stdout, or written to --out (mode 0600,\n" +
			"its directory created 0700, replaced atomically so a reader never sees half a\n" +
			"token); the issuance is audited.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if (agent == "") == (admin == "") {
				return errors.New("give either --agent or --admin")
			}
			o, err := src.open()
			if err != nil {
				return err
			}
			defer o.Close()
			mint := o.IssueToken
			name := agent
			if admin != "" {
				mint, name = o.IssueAdminToken, admin
			}
			who, err := actor(by)
			if err != nil {
				return err
			}
			raw, c, err := mint(cmd.Context(), name, ttl, who)
			if err != nil {
				return err
			}
			if out != "" {
				if err := writePrivate(out, []byte(raw+"\n")); err != nil {
					return fmt.Errorf("write token: %w", err)
				}
			} else {
				fmt.Fprintln(cmd.OutOrStdout(), raw)
			}
			if verbose {
				fmt.Fprintf(cmd.ErrOrStderr(), "agent %s, id %s, expires %s\n", c.Agent, c.ID, c.Expires.Format(time.RFC3339))
			}
			return nil
		},
	}
	src.flags(issue)
	issue.Flags().StringVar(&agent, "agent", "", "agent name (must be declared in the configuration)")
	issue.Flags().StringVar(&admin, "admin", "", "admin name, for the admin API (must be under admins:)")
	issue.Flags().DurationVar(&ttl, "ttl", 0, "lifetime (default: auth.default_ttl; at most auth.max_ttl)")
	issue.Flags().BoolVarP(&verbose, "verbose", "v", false, "print the token's ID and expiry on stderr")
	issue.Flags().StringVarP(&out, "out", "o", "", "write the token to this file (0600) instead of stdout")
	issue.Flags().StringVar(&by, "by", "", "who issues it (default: $USER)")
	cmd.AddCommand(issue, revokeCmd(store.RevokeToken, "CREDENTIAL_ID"), unrevokeCmd(store.RevokeToken, "CREDENTIAL_ID"))
	return cmd
}

// writePrivate replaces path with b, readable by its owner only: written to
// a temporary file beside it and renamed over it, so that a reader (wrap
// re-reads its token file on every request) sees the old or the new
// content, whole. Missing directories are created 0700.
func writePrivate(path string, b []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // gone already after the rename
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
