package gateway

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/ops"
)

// TestBrokeredCredentialsNeverLeak: an upstream's API key lives sealed in
// the secret store, is injected into each upstream request, and appears in
// no response, log line, audit event or error.
func TestBrokeredCredentialsNeverLeak(t *testing.T) {
	t.Parallel()
	const apiKey = "sk-live-7f3a9c2e1b5d4f60a8e2"
	var mu sync.Mutex
	var seen []string
	srv := mcp.NewServer(&mcp.Implementation{Name: "saas"}, nil)
	srv.AddTool(&mcp.Tool{Name: "lookup", InputSchema: map[string]any{"type": "object"}}, func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "ok"}}}, nil
	})
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, nil)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Get("Authorization"))
		mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(func() { ln.Close() })

	dir := t.TempDir()
	cfgText := fmt.Sprintf(`version: 1
data_dir: %s/data
listen: {address: "127.0.0.1:0", admin: "127.0.0.1:0"}
policy: {paths: [%s/p.cedar]}
agents: [{name: a}]
upstreams:
  - name: saas
    http: {url: "http://%s/mcp", headers: {Authorization: {from_secret: saas-key}}}
`, dir, dir, ln.Addr())
	os.WriteFile(filepath.Join(dir, "p.cedar"), []byte(`permit (principal, action, resource in Upstream::"saas");`), 0o600)
	os.WriteFile(filepath.Join(dir, "c.yaml"), []byte(cfgText), 0o600)
	cfg, err := config.Load(filepath.Join(dir, "c.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	// An inline secret is refused by validation.
	if _, err := config.Parse([]byte(strings.Replace(cfgText, "{from_secret: saas-key}", "{value: \"Bearer "+apiKey+"\"}", 1)), dir); err == nil {
		t.Fatal("inline secret accepted")
	}
	if err := cli(t, cfg).SetSecret(context.Background(), "saas-key", []byte("Bearer "+apiKey), "ops"); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	var lmu sync.Mutex
	g, err := New(cfg, Options{Log: slog.New(slog.NewJSONHandler(lockedBuf{&logs, &lmu}, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	hh := &harness{t: t, g: g, cfg: cfg, dir: dir, url: "http://" + g.AgentAddr() + "/mcp"}
	rctx, rc := context.WithTimeout(ctx, 20*time.Second)
	g.proxy.WaitReady(rctx)
	rc()
	s := hh.mustConnect("a")
	res, err := s.CallTool(context.Background(), &mcp.CallToolParams{Name: "saas__lookup", Arguments: map[string]any{}})
	if err != nil {
		t.Fatal(err)
	}
	_, callErr := s.CallTool(context.Background(), &mcp.CallToolParams{Name: "saas__nope", Arguments: map[string]any{}})
	cancel()
	<-done

	mu.Lock()
	injected := len(seen) > 0 && seen[len(seen)-1] == "Bearer "+apiKey
	mu.Unlock()
	if !injected {
		t.Fatalf("upstream did not receive the brokered credential: %q", seen)
	}
	var everything strings.Builder
	fmt.Fprint(&everything, res, callErr)
	lmu.Lock()
	everything.WriteString(logs.String())
	lmu.Unlock()
	for _, e := range hh.events() {
		fmt.Fprintf(&everything, "%+v\n", e)
	}
	db, _ := os.ReadFile(filepath.Join(dir, "data", ops.StoreFile))
	everything.Write(db)
	if strings.Contains(everything.String(), apiKey) {
		t.Fatal("the upstream credential leaked into a response, log, event or the store file")
	}
}

type lockedBuf struct {
	b  *bytes.Buffer
	mu *sync.Mutex
}

func (l lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
