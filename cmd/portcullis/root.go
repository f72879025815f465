package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/user"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/portcullis-dev/portcullis/internal/buildinfo"
	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/gateway"
	"github.com/portcullis-dev/portcullis/internal/mcpproxy"
	"github.com/portcullis-dev/portcullis/internal/ops"
)

// run builds the command tree and executes it with args.
func run(ctx context.Context, args []string) error {
	root := rootCmd()
	root.SetArgs(args)
	return root.ExecuteContext(ctx)
}

// rootCmd is the command tree.
func rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "portcullis",
		Short:         "Zero Trust control point for AI agents and their MCP tools",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       mcpproxy.Version,
	}
	root.SetVersionTemplate(buildinfo.Read().String() + "\n")
	root.AddCommand(serveCmd(), wrapCmd(), tokenCmd(), configCmd(), auditCmd(), policyCmd(), grantCmd(), approvalsCmd(), alertsCmd(), incidentsCmd(), baselineCmd(), memoryCmd(), sandboxCmd(), simulateCmd(), toolsCmd(), bomCmd(), evalCmd(), taskCmd(), agentCmd(), secretCmd(), postureCmd(), blastRadiusCmd(), consoleCmd(), migrateCmd())
	return root
}

// source says where a command's configuration comes from.
type source struct {
	config  string
	dev     bool
	dataDir string
}

func (s *source) flags(cmd *cobra.Command) {
	cmd.Flags().StringVarP(&s.config, "config", "c", "", "configuration file")
	cmd.Flags().BoolVar(&s.dev, "dev", false, "use the embedded development configuration")
	cmd.Flags().StringVar(&s.dataDir, "data-dir", "", "data directory (overrides the configuration; default for --dev: "+config.DefaultDataDir+")")
}

// load returns the configuration the flags select.
func (s *source) load() (*config.Config, error) {
	switch {
	case s.dev && s.config != "":
		return nil, errors.New("give either --config or --dev, not both")
	case s.dev:
		dir := s.dataDir
		if dir == "" {
			dir = config.DefaultDataDir
		}
		return gateway.DevConfig(dir)
	case s.config != "":
		c, err := config.Load(s.config)
		if err != nil {
			return nil, err
		}
		if s.dataDir != "" {
			c.DataDir = s.dataDir
		}
		return c, nil
	}
	return nil, errors.New("no configuration: give --config FILE, or --dev for the embedded defaults")
}

// open loads the configuration the flags select and opens its data
// directory for the operations of a command (one store, closed by the
// caller).
func (s *source) open() (*ops.Ops, error) {
	cfg, err := s.load()
	if err != nil {
		return nil, err
	}
	return ops.Open(cfg)
}

// run is the RunE of a command that works on a data directory: it opens
// the one the flags select, hands it to f and closes it.
func (s *source) run(f func(cmd *cobra.Command, args []string, o *ops.Ops) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		o, err := s.open()
		if err != nil {
			return err
		}
		defer o.Close()
		return f(cmd, args, o)
	}
}

// actor is who runs a command, for the audit record: --by, else the
// signed-in user ($USER, then the account's name). An action nobody can be
// named for is refused.
func actor(by string) (string, error) {
	if by = strings.TrimSpace(by); by != "" {
		return by, nil
	}
	if u := os.Getenv("USER"); u != "" {
		return u, nil
	}
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username, nil
	}
	return "", errors.New("give --by: who does this is recorded in the audit log")
}

// newTable starts a table on w with a header of tab-separated column
// names; rows are written tab-separated and the caller flushes.
func newTable(w io.Writer, header string) *tabwriter.Writer {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	return tw
}

func newLogger(w io.Writer, c *config.Config) *slog.Logger {
	level := slog.LevelInfo
	switch c.Log.Level {
	case "debug":
		level = slog.LevelDebug
	case "warn":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	}
	opts := &slog.HandlerOptions{Level: level}
	if c.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
