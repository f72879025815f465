package main

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/gateway"
	"github.com/portcullis-dev/portcullis/internal/ops"
	"github.com/portcullis-dev/portcullis/internal/policy"
)

func serveCmd() *cobra.Command {
	var src source
	var listen, admin string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the gateway",
		Long: "Run the gateway. With --dev it needs nothing else: SQLite and keys in the data\n" +
			"directory, a built-in demo upstream, the default policy, and a printed agent token.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := src.load()
			if err != nil {
				return err
			}
			if listen != "" {
				cfg.Listen.Address = listen
			}
			if admin != "" {
				cfg.Listen.Admin = admin
			}
			log := newLogger(os.Stderr, cfg)
			opts := gateway.Options{Log: log}
			if src.dev {
				opts.Policies = []policy.Source{policy.DefaultSource()}
			}
			g, err := gateway.New(cfg, opts)
			if err != nil {
				return err
			}
			if err := g.Listen(); err != nil {
				return err
			}
			if src.dev {
				if err := printDevBanner(cmd, g, cfg); err != nil {
					return err
				}
			}
			return g.Run(cmd.Context())
		},
	}
	src.flags(cmd)
	cmd.Flags().StringVar(&listen, "listen", "", "agent listener address (overrides the configuration)")
	cmd.Flags().StringVar(&admin, "admin-listen", "", "admin listener address (overrides the configuration)")
	return cmd
}

func printDevBanner(cmd *cobra.Command, g *gateway.Gateway, cfg *config.Config) error {
	raw, claims, err := g.IssueToken(cmd.Context(), gateway.DevAgent, cfg.Auth.DefaultTTL.D())
	if err != nil {
		return err
	}
	w := cmd.OutOrStdout()
	fmt.Fprintf(w, `
Portcullis development gateway (embedded defaults; not for production)

  MCP endpoint   %s   (streamable HTTP)
  admin          http://%s/metrics  /healthz  /readyz
  data           %s
  agent          %s, token valid until %s
                 (a new one: portcullis token issue --dev --agent %s)

  Authorization: Bearer %s
`, g.AgentURL(), g.AdminAddr(), ops.DataDir(cfg), gateway.DevAgent, claims.Expires.Local().Format("15:04:05"), gateway.DevAgent, raw)
	if as := cfg.Auth.AuthorizationServer; as != nil && len(as.Users) > 0 && as.Users[0].Password.Value != "" {
		fmt.Fprintf(w, `
  Or connect with no header: an MCP client that speaks OAuth (Claude Code,
  VS Code, the SDKs) registers at %s and opens a sign-in page:
  user %s, password %s   (this run only)
`, g.AuthorizationServerURL(), as.Users[0].Name, as.Users[0].Password.Value)
	}
	if token, _, err := g.Ops().ConsoleLink(cmd.Context(), gateway.DevAdmin, "portcullis-dev", 30*time.Minute); err == nil {
		fmt.Fprintf(w, `
  Console        %s
                 (signs in %s once, within 30 minutes; another: portcullis console link --dev --admin %s)
`, ConsoleLoginURL(cfg, g.AdminAddr(), token), gateway.DevAdmin, gateway.DevAdmin)
	}
	fmt.Fprintln(w)
	return nil
}
