package gateway

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/portcullis-dev/portcullis/internal/approval"
	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/mcpproxy"
	"github.com/portcullis-dev/portcullis/internal/ops"
	"github.com/portcullis-dev/portcullis/internal/store"
	"github.com/portcullis-dev/portcullis/internal/token"
)

// harness runs a real gateway on loopback for one test.
type harness struct {
	t    testing.TB
	g    *Gateway
	cfg  *config.Config
	dir  string
	url  string
	stop func()
}

// startGateway writes configYAML (with DIR/ replaced by the test's
// directory) and the given policy files, then starts a gateway and waits
// until its upstreams are connected.
func startGateway(t testing.TB, configYAML string, policies map[string]string) *harness {
	t.Helper()
	return startGatewayWith(t, configYAML, policies, true)
}

// startGatewayNoWait starts a gateway without waiting for its upstreams.
func startGatewayNoWait(t testing.TB, configYAML string, policies map[string]string) *harness {
	t.Helper()
	return startGatewayWith(t, configYAML, policies, false)
}

func startGatewayWith(t testing.TB, configYAML string, policies map[string]string, wait bool) *harness {
	t.Helper()
	dir := t.TempDir()
	for name, body := range policies {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// "DIR/" only: a bare DIR also occurs in random identifiers (an
	// OAuth client ID registered at a test IdP), which it would corrupt.
	configYAML = strings.ReplaceAll(configYAML, "DIR/", dir+"/")
	path := filepath.Join(dir, "portcullis.yaml")
	if err := os.WriteFile(path, []byte(configYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("load config: %v", err)
	}
	admin := "127.0.0.1:0"
	if h, p, err := net.SplitHostPort(cfg.Listen.Admin); err == nil && h == "127.0.0.1" && p != "0" && strings.Contains(configYAML, "admin: "+cfg.Listen.Admin) {
		admin = cfg.Listen.Admin // a test that names its admin port (a redirect URI registered with it)
	}
	cfg.Listen.Address, cfg.Listen.Admin = "127.0.0.1:0", admin
	if u, err := url.Parse(cfg.Listen.PublicURL); err == nil && u.Hostname() == "127.0.0.1" && u.Port() != "" {
		cfg.Listen.Address = u.Host // a test naming a loopback public URL listens there
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	g, err := New(cfg, Options{Log: log})
	if err != nil {
		t.Fatalf("new gateway: %v", err)
	}
	if err := g.Listen(); err != nil {
		if errors.Is(err, syscall.EADDRINUSE) && admin != "127.0.0.1:0" {
			g.store.Close()
			return nil // the named port was taken meanwhile: the caller picks another
		}
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	h := &harness{t: t, g: g, cfg: cfg, dir: dir, url: "http://" + g.AgentAddr() + "/mcp"}
	stopped := false
	h.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("gateway run: %v", err)
		}
	}
	t.Cleanup(h.stop)
	if !wait {
		return h
	}
	rctx, rcancel := context.WithTimeout(ctx, 60*time.Second)
	defer rcancel()
	if err := g.proxy.WaitReady(rctx); err != nil {
		t.Fatalf("upstreams not ready: %v", err)
	}
	return h
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

func (h *harness) token(agent string, ttl time.Duration) string {
	h.t.Helper()
	raw, _, err := h.g.IssueToken(context.Background(), agent, ttl)
	if err != nil {
		h.t.Fatalf("issue token: %v", err)
	}
	return raw
}

// connect opens a Go SDK client session through the gateway with token.
func (h *harness) connect(token string) (*mcp.ClientSession, error) {
	return h.connectWith(token, nil)
}

func (h *harness) connectWith(token string, opts *mcp.ClientOptions) (*mcp.ClientSession, error) {
	client := mcp.NewClient(&mcp.Implementation{Name: "e2e", Version: "1"}, opts)
	httpc := &http.Client{Transport: bearer{token: token}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: h.url, HTTPClient: httpc, MaxRetries: -1}, nil)
	if err == nil {
		h.t.Cleanup(func() { s.Close() })
	}
	return s, err
}

func (h *harness) mustConnect(agent string) *mcp.ClientSession {
	h.t.Helper()
	s, err := h.connect(h.token(agent, 5*time.Minute))
	if err != nil {
		h.t.Fatalf("connect as %s: %v", agent, err)
	}
	return s
}

// bearer sends an agent token, and the orchestrator's intent header when
// it has one.
type bearer struct{ token, intent string }

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	if b.intent != "" {
		r.Header.Set(mcpproxy.HeaderIntent, b.intent)
	}
	return http.DefaultTransport.RoundTrip(r)
}

// events reads the audit log (the gateway keeps writing while we read:
// SQLite in WAL mode allows it).
func (h *harness) events() []*audit.Event {
	h.t.Helper()
	st, err := store.Open(filepath.Join(h.g.dataDir, ops.StoreFile))
	if err != nil {
		h.t.Fatal(err)
	}
	defer st.Close()
	rows, err := st.Events(context.Background(), store.EventQuery{})
	if err != nil {
		h.t.Fatal(err)
	}
	var out []*audit.Event
	for _, r := range rows {
		e, err := audit.Decode(r)
		if err != nil {
			h.t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

// findEvent returns the first event matching f, polling briefly for events
// that are written in the background.
func (h *harness) findEvent(f func(*audit.Event) bool) *audit.Event {
	h.t.Helper()
	for i := 0; i < 100; i++ {
		for _, e := range h.events() {
			if f(e) {
				return e
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// post sends one raw JSON-RPC body to the gateway.
func (h *harness) post(token, body string, header map[string]string) (*http.Response, string) {
	h.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, h.url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func toolNames(t *testing.T, s *mcp.ClientSession) []string {
	t.Helper()
	res, err := s.ListTools(context.Background(), nil)
	if err != nil {
		t.Fatalf("list tools: %v", err)
	}
	var names []string
	for _, tl := range res.Tools {
		names = append(names, tl.Name)
	}
	return names
}

func text(res *mcp.CallToolResult) string {
	var b strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String()
}

// waitHeld waits up to three seconds for a call held for approval and
// returns it (nil if none came).
func (h *harness) waitHeld() *approval.Request {
	h.t.Helper()
	o := cli(h.t, h.cfg)
	for range 150 {
		rs, err := o.ListApprovals(context.Background(), approval.Pending)
		if err != nil {
			h.t.Fatal(err)
		}
		if len(rs) > 0 {
			return rs[0]
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// cli opens the data directory of cfg as a CLI command does, beside the
// running gateway; it is closed when the test ends.
func cli(t testing.TB, cfg *config.Config) *ops.Ops {
	t.Helper()
	o, err := ops.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close() })
	return o
}

// taskSession starts task t bound to a fresh DPoP key, as `portcullis task
// start` would, and connects an agent presenting its token with proofs of
// that key. The session is closed when the test ends.
func (h *harness) taskSession(t token.Task) (*mcp.ClientSession, token.Task) {
	h.t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	jkt, err := token.Thumbprint(key.Public())
	if err != nil {
		h.t.Fatal(err)
	}
	t.JKT = jkt
	ctx := context.Background()
	raw, task, err := cli(h.t, h.cfg).StartTask(ctx, t, "", 5*time.Minute, "test")
	if err != nil {
		h.t.Fatal(err)
	}
	client := mcp.NewClient(&mcp.Implementation{Name: "task-agent"}, nil)
	s, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: h.url, HTTPClient: &http.Client{Transport: &token.DPoPTransport{Token: raw, Key: key}}, MaxRetries: -1}, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { s.Close() })
	return s, task
}

// adminGet fetches path from the admin listener: status and body.
func (h *harness) adminGet(path string) (int, string) {
	h.t.Helper()
	resp, err := http.Get("http://" + h.g.AdminAddr() + path)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
