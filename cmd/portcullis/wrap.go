package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/gateway"
	"github.com/portcullis-dev/portcullis/internal/identity"
)

// TokenEnv is the environment variable `wrap` reads the agent token from.
const TokenEnv = "PORTCULLIS_TOKEN"

func wrapCmd() *cobra.Command {
	var configPath, upstream, name, tokenFile string
	var inherit, readOnly, readWrite, egressTo []string
	var sandboxMode string
	var namespace bool
	cmd := &cobra.Command{
		Use:   "wrap --config FILE [--upstream NAME | -- COMMAND [ARGS...]]",
		Short: "Enforce policy on one local stdio MCP server, speaking stdio to the client",
		Long: "Run one stdio MCP server behind the full enforcement pipeline (authentication,\n" +
			"policy, audit) and speak MCP over stdio to the client that launched wrap, so it\n" +
			"drops into a Claude Code or desktop MCP configuration. The server is either an\n" +
			"upstream named in the configuration or the command after --. The agent token is\n" +
			"read from $" + TokenEnv + " or --token-file (re-read when it changes) and checked on\n" +
			"every request. Logs go to stderr; stdout carries only MCP.",
		RunE: func(cmd *cobra.Command, args []string) error {
			if configPath == "" {
				return errors.New("--config is required (agents, policy and data directory come from it)")
			}
			cfg, err := config.Load(configPath)
			if err != nil {
				return err
			}
			sb := &config.Sandbox{Mode: sandboxMode, ReadOnly: absPaths(readOnly), ReadWrite: absPaths(readWrite), Egress: egressTo}
			if err := selectWrapped(cfg, upstream, name, inherit, args, sb); err != nil {
				return err
			}
			// One agent, one server: names as the server gives them unless
			// asked otherwise, and no spare processes.
			for i := range cfg.Upstreams {
				u := &cfg.Upstreams[i]
				switch {
				case namespace:
					u.Namespace = config.NamespacePrefix
				case u.Namespace == "":
					u.Namespace = config.NamespaceNone
				}
				if u.Spares == nil {
					zero := 0
					u.Spares = &zero
				}
			}
			log := newLogger(os.Stderr, cfg)
			var g *gateway.Gateway
			creds := &tokenSource{file: tokenFile, env: os.Getenv(TokenEnv)}
			principal := func(ctx context.Context) (*identity.Principal, error) {
				raw, err := creds.token()
				if err != nil {
					return nil, err
				}
				return g.Authenticator().Principal(raw)
			}
			g, err = gateway.New(cfg, gateway.Options{Log: log})
			if err != nil {
				return err
			}
			return g.RunStdio(cmd.Context(), os.Stdin, os.Stdout, principal)
		},
	}
	cmd.Flags().StringVarP(&configPath, "config", "c", "", "configuration file (required)")
	cmd.Flags().StringVar(&upstream, "upstream", "", "wrap this upstream from the configuration")
	cmd.Flags().StringVar(&name, "name", "local", "upstream name for a command given after --")
	cmd.Flags().StringSliceVar(&inherit, "inherit-env", []string{"PATH"}, "variables the command inherits (nothing else is passed)")
	cmd.Flags().StringVar(&tokenFile, "token-file", "", "file holding the agent token (default: $"+TokenEnv+")")
	cmd.Flags().BoolVar(&namespace, "namespace", false, "prefix tool names with the upstream name")
	cmd.Flags().StringSliceVar(&readWrite, "read-write", nil, "for a command after --: a path the sandboxed server may read and write (repeatable)")
	cmd.Flags().StringSliceVar(&readOnly, "read-only", nil, "for a command after --: a path the sandboxed server may read (repeatable)")
	cmd.Flags().StringVar(&sandboxMode, "sandbox", config.SandboxBuiltin, "for a command after --: builtin or none")
	cmd.Flags().StringSliceVar(&egressTo, "egress", nil, "for a command after --: a destination HOST:PORT the sandboxed server may reach through the gateway's proxy (repeatable; default: no network)")
	return cmd
}

// selectWrapped narrows cfg.Upstreams to the one server wrap serves.
func selectWrapped(cfg *config.Config, upstream, name string, inherit, args []string, sb *config.Sandbox) error {
	switch {
	case upstream != "" && len(args) > 0:
		return errors.New("give either --upstream or a command after --, not both")
	case upstream != "":
		for _, u := range cfg.Upstreams {
			if u.Name == upstream {
				cfg.Upstreams = []config.Upstream{u}
				return nil
			}
		}
		return fmt.Errorf("no upstream %q in the configuration", upstream)
	case len(args) > 0:
		cfg.Upstreams = []config.Upstream{{Name: name, Stdio: &config.StdioServer{Command: args[0], Args: args[1:], InheritEnv: inherit, Sandbox: sb}}}
		return cfg.Validate()
	case len(cfg.Upstreams) == 1:
		return nil
	}
	return errors.New("name the server to wrap: --upstream NAME or -- COMMAND ARGS")
}

// tokenSource yields the current agent token, re-reading the file when it
// changes so that a rotated token takes effect without restarting wrap.
type tokenSource struct {
	file string
	env  string
}

func (t *tokenSource) token() (string, error) {
	if t.file == "" {
		if t.env == "" {
			return "", errors.New("no agent token: set $" + TokenEnv + " or --token-file")
		}
		return t.env, nil
	}
	st, err := os.Stat(t.file)
	if err != nil {
		return "", fmt.Errorf("read token file: %w", err)
	}
	if st.Size() > 16<<10 {
		return "", errors.New("read token file: too large")
	}
	b, err := os.ReadFile(t.file)
	if err != nil {
		return "", fmt.Errorf("read token file: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// absPaths makes command-line paths absolute (the sandbox's rules are).
func absPaths(ps []string) []string {
	out := make([]string, 0, len(ps))
	for _, p := range ps {
		if a, err := filepath.Abs(p); err == nil {
			p = a
		}
		out = append(out, p)
	}
	return out
}
