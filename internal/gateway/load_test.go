package gateway

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// TestSaturationIsVisible: with an upstream's one slot taken and its one
// queue place filled, /readyz answers 503 naming the upstream, /metrics
// shows the slots, the queue and the agent's share, and the next call is
// shed and counted; once the calls end the gateway is ready again.
func TestSaturationIsVisible(t *testing.T) {
	t.Parallel()
	open := make(chan struct{})
	var started atomic.Int32
	srv := mcp.NewServer(&mcp.Implementation{Name: "slow"}, nil)
	srv.AddTool(&mcp.Tool{Name: "gate", InputSchema: map[string]any{"type": "object"}}, func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		started.Add(1)
		select {
		case <-open:
		case <-ctx.Done():
		}
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "ok"}}}, nil
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go http.Serve(ln, mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, nil))
	t.Cleanup(func() { ln.Close() })
	h := startGateway(t, fmt.Sprintf(`
version: 1
data_dir: DIR/data
policy: {paths: [DIR/p.cedar]}
agents: [{name: worker}]
upstreams:
  - name: slow
    http: {url: "http://%s/mcp"}
    max_concurrent_calls: 1
    max_queued_calls: 1
    queue_timeout: 30s
`, ln.Addr()), map[string]string{"p.cedar": `permit (principal, action, resource in Upstream::"slow");`})
	get := h.adminGet
	s := h.mustConnect("worker")
	done := make(chan error, 2)
	for range 2 {
		go func() {
			_, err := s.CallTool(context.Background(), &mcp.CallToolParams{Name: "slow__gate"})
			done <- err
		}()
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		used, _, queued, _ := h.g.proxy.Upstreams()[0].Load()
		if started.Load() == 1 && used == 1 && queued == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not saturated: %d started, %d in use, %d queued", started.Load(), used, queued)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if code, body := get("/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "upstream slow: saturated") {
		t.Errorf("saturated readyz %d %q", code, body)
	}
	_, err = s.CallTool(context.Background(), &mcp.CallToolParams{Name: "slow__gate"})
	if err == nil || !strings.Contains(err.Error(), "upstream_busy") {
		t.Errorf("call beyond the queue: %v", err)
	}
	_, body := get("/metrics")
	for _, want := range []string{
		`portcullis_upstream_slots{upstream="slow"} 1`,
		`portcullis_upstream_slots_in_use{upstream="slow"} 1`,
		`portcullis_upstream_queue_depth{upstream="slow"} 1`,
		`portcullis_upstream_queue_limit{upstream="slow"} 1`,
		`portcullis_upstream_agent_slots_in_use{agent="worker",upstream="slow"} 1`,
		`portcullis_upstream_agent_queue_depth{agent="worker",upstream="slow"} 1`,
		`portcullis_upstream_shed_total{agent="worker",reason="queue_full",upstream="slow"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s\n%s", want, grepLines(body, "upstream_"))
		}
	}
	close(open)
	for range 2 {
		if err := <-done; err != nil {
			t.Errorf("held call: %v", err)
		}
	}
	if code, body := get("/readyz"); code != 200 || body != "ready\nupstream slow: ready\n" {
		t.Errorf("readyz after the calls %d %q", code, body)
	}
	if _, body := get("/metrics"); !strings.Contains(body, `portcullis_upstream_queue_wait_seconds_count{upstream="slow"} 1`) {
		t.Error("the queued call's wait is not in the histogram")
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestReadinessIsPerUpstream: one upstream down among several leaves the
// gateway ready, with that upstream named; the body lists each upstream.
func TestReadinessIsPerUpstream(t *testing.T) {
	t.Parallel()
	cfg := demoConfig + `  - name: broken
    stdio: {command: /bin/false}
`
	h := startGateway(t, cfg, map[string]string{"policy.cedar": demoPolicy})
	code, body := h.adminGet("/readyz")
	if code != http.StatusOK || !strings.HasPrefix(body, "ready\n") || !strings.Contains(body, "upstream demo: ready") || !strings.Contains(body, "upstream broken: down") {
		t.Errorf("readyz %d %q", code, body)
	}
}
