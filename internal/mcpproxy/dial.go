package mcpproxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/portcullis-dev/portcullis/internal/config"
)

// StdioDialer launches cfg's command with exactly the configured environment
// (plus the variables named in inherit_env) and speaks MCP over its stdio.
// Secret references are resolved at every launch and never logged. The
// executable's hash is checked at every launch when pinned, and in strict
// mode a package-runner launch must name an exact version.
// Secrets opens from_secret references (the gateway's vault).
type Secrets func(name string) (string, error)

func StdioDialer(cfg *config.StdioServer, baseDir string, strict bool, secrets Secrets, log *slog.Logger) Dialer {
	return func(ctx context.Context) (mcp.Transport, error) {
		if strict {
			if err := CheckPackagePinned(cfg.Command, cfg.Args); err != nil {
				return nil, err
			}
		}
		path, err := CheckExecutable(cfg.Command, cfg.SHA256)
		if err != nil {
			return nil, err
		}
		env, err := stdioEnv(cfg, baseDir, secrets)
		if err != nil {
			return nil, err
		}
		cmd := exec.Command(path, cfg.Args...)
		cmd.Env = env
		cmd.Dir = cfg.Dir
		if cmd.Dir != "" && !filepath.IsAbs(cmd.Dir) {
			cmd.Dir = filepath.Join(baseDir, cmd.Dir)
		}
		cmd.Stderr = stderrLogger(log)
		return &mcp.CommandTransport{Command: cmd}, nil
	}
}

func stdioEnv(cfg *config.StdioServer, baseDir string, secrets Secrets) ([]string, error) {
	env := []string{}
	for _, name := range cfg.InheritEnv {
		if v, ok := os.LookupEnv(name); ok {
			env = append(env, name+"="+v)
		}
	}
	names := make([]string, 0, len(cfg.Env))
	for k := range cfg.Env {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		v, err := cfg.Env[k].Resolve(baseDir, secrets)
		if err != nil {
			return nil, fmt.Errorf("stdio env %s: %w", k, err)
		}
		env = append(env, k+"="+v)
	}
	return env, nil
}

// stderrLogger relays an upstream's stderr lines to the log, bounded per line.
func stderrLogger(log *slog.Logger) io.Writer {
	pr, pw := io.Pipe()
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 0, 4096), 64<<10)
		for sc.Scan() {
			log.Debug("upstream stderr", "line", sc.Text())
		}
		// A line longer than the buffer ends scanning; keep draining so the
		// child never blocks on a full pipe.
		io.Copy(io.Discard, pr)
	}()
	return pw
}

// HTTPDialer connects to a streamable-HTTP upstream, adding the configured
// headers (resolved from their references at every connect).
func HTTPDialer(cfg *config.HTTPServer, baseDir string, secrets Secrets) Dialer {
	return func(ctx context.Context) (mcp.Transport, error) {
		h := http.Header{}
		for k, v := range cfg.Headers {
			s, err := v.Resolve(baseDir, secrets)
			if err != nil {
				return nil, fmt.Errorf("http header %s: %w", k, err)
			}
			h.Set(k, s)
		}
		base := http.DefaultTransport
		if cfg.SPKISHA256 != "" {
			tc, err := SPKIPinnedTLS(cfg.SPKISHA256)
			if err != nil {
				return nil, err
			}
			t := http.DefaultTransport.(*http.Transport).Clone()
			t.TLSClientConfig = tc
			base = t
		}
		client := &http.Client{Transport: &headerTransport{base: base, headers: h}}
		return &mcp.StreamableClientTransport{Endpoint: cfg.URL, HTTPClient: client, MaxRetries: 2}, nil
	}
}

type headerTransport struct {
	base    http.RoundTripper
	headers http.Header
}

func (t *headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	for k, vs := range t.headers {
		r.Header[k] = vs
	}
	return t.base.RoundTrip(r)
}

// InProcessDialer serves an in-process *mcp.Server (the built-in demo) over an
// in-memory pipe.
func InProcessDialer(newServer func() *mcp.Server) Dialer {
	return func(ctx context.Context) (mcp.Transport, error) {
		ct, st := mcp.NewInMemoryTransports()
		if _, err := newServer().Connect(ctx, st, nil); err != nil {
			return nil, fmt.Errorf("start in-process server: %w", err)
		}
		return ct, nil
	}
}
