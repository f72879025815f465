package mcpproxy

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/egress"
	"github.com/portcullis-dev/portcullis/internal/identity"
	"github.com/portcullis-dev/portcullis/internal/transport"
)

// Secrets opens from_secret references (the gateway's vault).
type Secrets func(name string) (string, error)

// EgressHooks are what the gateway does with sandboxed servers' ways out:
// Record audits each connection; Opened (optional) registers a launch's
// proxy so that the gateway can cut it (containment), and returns the
// function that forgets it when the launch ends.
type EgressHooks struct {
	Record func(egress.Event)
	Opened func(*egress.Proxy) (forget func())
}

// egressWait bounds how long a launch waits for its sandbox's way out.
const egressWait = 10 * time.Second

// upstreamLimits bound what an upstream may send in one message: an answer
// a little over the largest result the gateway relays, nested deeper than
// agents may (structured content).
func upstreamLimits(l config.Limits) (maxMsg, maxDepth int) {
	return l.MaxResultBytes + 1<<20, max(l.MaxJSONDepth, 128)
}

// StdioDialer launches cfg's command with exactly the configured
// environment (plus the variables named in inherit_env) and speaks MCP over
// its stdio. Secret references are resolved at every launch and never
// logged. The executable's hash is checked at every launch when pinned, and
// in strict mode a package-runner launch must name an exact version.
//
// The server runs in the built-in sandbox unless its configuration says
// otherwise (internal/sandbox; dataDir is what it must never reach). With
// sandbox.egress, its way out is a proxy of the gateway's allowing only
// those destinations, reporting every connection to hooks.
func StdioDialer(cfg *config.StdioServer, baseDir, dataDir string, strict bool, secrets Secrets, limits config.Limits, log *slog.Logger, hooks EgressHooks) transport.Dialer {
	maxMsg, maxDepth := upstreamLimits(limits)
	sb := cfg.Sandbox
	if sb == nil {
		sb = &config.Sandbox{}
	}
	rules, err := egress.ParseRules(sb.Egress)
	if err != nil { // configuration validation refused it already
		return func(context.Context) (transport.Conn, error) { return nil, err }
	}

	return func(ctx context.Context) (transport.Conn, error) {
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
		dir := cfg.Dir
		if dir != "" && !filepath.IsAbs(dir) {
			dir = filepath.Join(baseDir, dir)
		}
		// A private folder for the server's temporary files and home, for
		// this launch alone, removed when it exits.
		var tmp string
		cleanup := func() {}
		if sb.Mode == "" || sb.Mode == config.SandboxBuiltin {
			if tmp, err = sandboxTemp(); err != nil {
				return nil, err
			}
			cleanup = func() { os.RemoveAll(tmp) }
		}
		pins := map[string]string{}
		for p, h := range cfg.Files {
			if !filepath.IsAbs(p) {
				p = filepath.Join(baseDir, p)
			}
			pins[p] = h
		}
		cmd, eg, err := confine(sb, path, cfg.Args, env, dir, dataDir, tmp, pins, log)
		if err != nil {
			cleanup()
			return nil, err
		}
		cmd.Stderr = stderrLogger(log)
		if eg == nil {
			return transport.StartProcessThen(cmd, maxMsg, maxDepth, log, cleanup)
		}
		// The way out lives as long as the process (or until the gateway
		// cuts it).
		proxy := &egress.Proxy{Rules: rules, Record: hooks.Record, Launch: "launch-" + strings.ToLower(rand.Text()[:12])}
		forget := func() {}
		if hooks.Opened != nil {
			forget = hooks.Opened(proxy)
		}
		conn, err := transport.StartProcessThen(cmd, maxMsg, maxDepth, log, func() { proxy.Close(); forget(); eg.Close(); cleanup() })
		if err != nil {
			return nil, err
		}
		ln, err := eg.Listener(egressWait)
		if err != nil {
			conn.Close()
			return nil, err
		}
		go proxy.Serve(ln)
		return conn, nil
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

// maxRedirects bounds the redirects followed for one upstream request.
const maxRedirects = 3

// sameOriginRedirect follows a redirect only within the upstream's origin
// (scheme, host and port: a server moving /mcp to /mcp/). Go's client
// forwards configured headers (an API key in `headers`) to wherever a
// redirect points, dropping only Authorization and cookies across
// domains: a redirect elsewhere would hand the upstream's credentials to
// a host the operator never named.
func sameOriginRedirect(req *http.Request, via []*http.Request) error {
	first := via[0].URL
	if req.URL.Scheme != first.Scheme || req.URL.Host != first.Host {
		return fmt.Errorf("upstream redirected to another origin (%s://%s): not followed", req.URL.Scheme, req.URL.Host)
	}
	if len(via) > maxRedirects {
		return fmt.Errorf("upstream redirected more than %d times", maxRedirects)
	}
	return nil
}

// GrantFunc returns the OAuth grant a new session with an upstream uses
// (ctx says for which user: LinkUser).
type GrantFunc func(ctx context.Context) (auth.OAuthHandler, error)

// HTTPDialer opens sessions with a streamable-HTTP upstream over one HTTP
// transport that keeps as many connections as the upstream may have calls
// in flight. Configured headers are resolved from their references for
// every session; grant, if set, makes every session an OAuth client.
// tlsc, if set, is the TLS the gateway speaks to it (its roots, its
// client certificate); an SPKI pin is checked on top.
func HTTPDialer(cfg *config.HTTPServer, baseDir string, secrets Secrets, maxConns int, limits config.Limits, log *slog.Logger, grant GrantFunc, tlsc *tls.Config) (transport.Dialer, error) {
	base := http.DefaultTransport.(*http.Transport).Clone()
	if tlsc != nil {
		base.TLSClientConfig = tlsc.Clone()
	}
	if cfg.SPKISHA256 != "" {
		tc, err := SPKIPinnedTLS(cfg.SPKISHA256)
		if err != nil {
			return nil, err
		}
		if base.TLSClientConfig == nil {
			base.TLSClientConfig = tc
		} else {
			base.TLSClientConfig.VerifyConnection = tc.VerifyConnection
		}
	}
	client := &http.Client{Transport: transport.NewHTTPTransport(base, maxConns), CheckRedirect: sameOriginRedirect}
	if cfg.OAuth != nil || cfg.Assertion != nil {
		// Streamable HTTP needs no redirect; following one would carry the
		// upstream's token elsewhere (Go keeps Authorization for the same
		// host on another scheme or port).
		client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	}
	maxMsg, maxDepth := upstreamLimits(limits)
	return func(ctx context.Context) (transport.Conn, error) {
		h := http.Header{}
		for k, v := range cfg.Headers {
			s, err := v.Resolve(baseDir, secrets)
			if err != nil {
				return nil, fmt.Errorf("http header %s: %w", k, err)
			}
			h.Set(k, s)
		}
		c := transport.NewHTTPConn(cfg.URL, client, h, maxMsg, maxDepth, log)
		if grant != nil {
			g, err := grant(ctx)
			if err != nil {
				return nil, fmt.Errorf("%w: %w", transport.ErrAuthorization, err)
			}
			c.SetOAuth(g)
		}
		return c, nil
	}, nil
}

type linkUserKey struct{}

// User is the person an agent session acts for: Name as the credential
// gave it, Key qualified by who vouched for it (Portcullis, or an external
// issuer), so that one name from two issuers is two people.
type User struct{ Key, Name string }

// userOf is the person p acts for (zero when none).
func userOf(p *identity.Principal) User {
	if p == nil || p.User == "" {
		return User{}
	}
	by := "portcullis"
	if strings.HasPrefix(p.Method, "oauth:") {
		by = p.Method
	}
	return User{Key: by + "\x00" + p.User, Name: p.User}
}

// withLinkUser says that the session being opened with an upstream serves
// user's agent sessions only (isolation user or session).
func withLinkUser(ctx context.Context, u User) context.Context {
	return context.WithValue(ctx, linkUserKey{}, u)
}

// LinkUser is the user a new upstream session serves alone, if it does.
func LinkUser(ctx context.Context) (User, bool) {
	u, ok := ctx.Value(linkUserKey{}).(User)
	return u, ok
}

// InProcessDialer serves an in-process *mcp.Server (the built-in demo, and
// tests) over an in-memory pipe: one server session per connection.
func InProcessDialer(newServer func() *mcp.Server, limits config.Limits) transport.Dialer {
	maxMsg, maxDepth := upstreamLimits(limits)
	return func(ctx context.Context) (transport.Conn, error) {
		srv := newServer()
		return transport.Pipe(ctx, func(ctx context.Context, r io.ReadCloser, w io.WriteCloser) error {
			ss, err := srv.Connect(ctx, &mcp.IOTransport{Reader: r, Writer: w}, nil)
			if err != nil {
				return err
			}
			return ss.Wait()
		}, maxMsg, maxDepth, nil)
	}
}
