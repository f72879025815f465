package main

import (
	"fmt"
	"net"
	"net/url"
	"time"

	"github.com/spf13/cobra"

	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/console"
	"github.com/portcullis-dev/portcullis/internal/ops"
)

func consoleCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "console", Short: "The web console on the admin listener (docs/console.md)"}
	var src source
	var admin, by string
	var ttl time.Duration
	link := &cobra.Command{
		Use:   "link --admin NAME",
		Short: "A one-time sign-in link to the console for a declared admin (audited)",
		Args:  cobra.NoArgs,
		RunE: src.run(func(cmd *cobra.Command, _ []string, o *ops.Ops) error {
			if admin == "" {
				return fmt.Errorf("--admin is required (one of the configuration's admins)")
			}
			who, err := actor(by)
			if err != nil {
				return err
			}
			token, expires, err := o.ConsoleLink(cmd.Context(), admin, who, ttl)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s\n(for %s, once, until %s)\n", ConsoleLoginURL(o.Config(), "", token), admin, expires.Local().Format(time.TimeOnly))
			return nil
		}),
	}
	src.flags(link)
	link.Flags().StringVar(&admin, "admin", "", "the admin the link signs in")
	link.Flags().StringVar(&by, "by", "", "who issues it (default: $USER)")
	link.Flags().DurationVar(&ttl, "ttl", 10*time.Minute, "how long the link may be used (at most 1h)")
	cmd.AddCommand(link)
	return cmd
}

// ConsoleLoginURL is the sign-in URL for token on the admin listener
// (addr, or the configured one).
func ConsoleLoginURL(cfg *config.Config, addr, token string) string {
	if addr == "" {
		addr = cfg.Listen.Admin
	}
	if host, port, err := net.SplitHostPort(addr); err == nil && (host == "" || host == "0.0.0.0" || host == "::") {
		addr = net.JoinHostPort("localhost", port)
	}
	return "http://" + addr + console.Prefix + "/login?token=" + url.QueryEscape(token)
}
