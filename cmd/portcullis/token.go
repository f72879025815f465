package main

import (
	"errors"
	"fmt"
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
	issue := &cobra.Command{
		Use:   "issue",
		Short: "Mint a short-lived token for a configured agent",
		Long: "Mint a short-lived EdDSA token for a configured agent, signed with the data\n" +
			"directory's key. The token is printed on stdout; the issuance is audited.",
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
			raw, c, err := mint(cmd.Context(), name, ttl)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), raw)
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
	cmd.AddCommand(issue, revokeCmd(store.RevokeToken, "CREDENTIAL_ID"))
	return cmd
}
