// Command roundtrip measures what the gateway adds to an MCP tools/call.
//
// It starts a Go streamable-HTTP upstream (an echo tool) in this process and
// the portcullis binary as a separate process in front of it, then measures,
// interleaved in the same run so that machine noise hits both alike:
//
//   - sequential round trips, direct to the upstream and through the gateway
//     (p50, p99 and the added latency);
//   - throughput with concurrent clients (calls/s, and the ratio);
//   - the gateway's resident memory idle and with N open agent sessions.
//
// The MCP protocol version is pinned on both legs (-protocol). Usage:
//
//	go run ./bench/roundtrip -portcullis ./portcullis [-calls 3000] [-json out.json]
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

type options struct {
	binary, protocol, jsonOut, sync string
	calls, workers, sessions        int
	duration                        time.Duration
}

func main() {
	var o options
	flag.StringVar(&o.binary, "portcullis", "./portcullis", "portcullis binary")
	flag.StringVar(&o.protocol, "protocol", "2025-11-25", "MCP protocol version on both legs")
	flag.StringVar(&o.jsonOut, "json", "", "also write the results as JSON to this file")
	flag.StringVar(&o.sync, "sync", "full", "store.synchronous of the gateway (full or normal)")
	flag.IntVar(&o.calls, "calls", 3000, "sequential calls per leg")
	flag.IntVar(&o.workers, "workers", 16, "concurrent clients in the throughput phase")
	flag.IntVar(&o.sessions, "sessions", 1000, "open agent sessions for the memory measurement")
	flag.DurationVar(&o.duration, "duration", 5*time.Second, "length of each throughput phase")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "roundtrip:", err)
		os.Exit(1)
	}
}

// Results are what the harness prints.
type Results struct {
	Protocol         string  `json:"protocol"`
	Sync             string  `json:"store_synchronous"`
	Calls            int     `json:"sequential_calls_per_leg"`
	DirectP50us      float64 `json:"direct_p50_us"`
	DirectP99us      float64 `json:"direct_p99_us"`
	GatewayP50us     float64 `json:"gateway_p50_us"`
	GatewayP99us     float64 `json:"gateway_p99_us"`
	AddedP50us       float64 `json:"added_p50_us"`
	AddedP99us       float64 `json:"added_p99_us"`
	Workers          int     `json:"workers"`
	DirectCallsPerS  float64 `json:"direct_calls_per_s"`
	GatewayCallsPerS float64 `json:"gateway_calls_per_s"`
	ThroughputRatio  float64 `json:"gateway_to_direct_throughput"`
	IdleRSSKiB       int     `json:"gateway_idle_rss_kib"`
	Sessions         int     `json:"sessions"`
	SessionsRSSKiB   int     `json:"gateway_rss_with_sessions_kib"`
	PerSessionBytes  float64 `json:"bytes_per_idle_session"`
}

func run(o options) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	upURL, err := startUpstream(ctx)
	if err != nil {
		return err
	}
	gw, err := startGateway(ctx, o, upURL)
	if err != nil {
		return err
	}
	defer gw.stop()
	res := Results{Protocol: o.protocol, Sync: o.sync, Calls: o.calls, Workers: o.workers, Sessions: o.sessions}
	if res.IdleRSSKiB, err = rss(gw.pid()); err != nil {
		return err
	}

	direct, err := connect(ctx, upURL, "", o.protocol)
	if err != nil {
		return fmt.Errorf("connect direct: %w", err)
	}
	via, err := connect(ctx, gw.url, gw.token, o.protocol)
	if err != nil {
		return fmt.Errorf("connect through gateway: %w", err)
	}
	call := func(s *mcp.ClientSession, name string) (time.Duration, error) {
		start := time.Now()
		r, err := s.CallTool(ctx, &mcp.CallToolParams{Name: name, Arguments: map[string]any{"message": "hello, portcullis"}})
		if err == nil && r.IsError {
			err = errors.New("tool error")
		}
		return time.Since(start), err
	}
	for i := 0; i < 300; i++ { // warm up both legs
		if _, err := call(direct, "echo"); err != nil {
			return err
		}
		if _, err := call(via, "up__echo"); err != nil {
			return err
		}
	}
	var d, g []time.Duration
	for i := 0; i < o.calls; i++ {
		a, err := call(direct, "echo")
		if err != nil {
			return err
		}
		b, err := call(via, "up__echo")
		if err != nil {
			return err
		}
		d, g = append(d, a), append(g, b)
	}
	res.DirectP50us, res.DirectP99us = pct(d, 50), pct(d, 99)
	res.GatewayP50us, res.GatewayP99us = pct(g, 50), pct(g, 99)
	res.AddedP50us, res.AddedP99us = res.GatewayP50us-res.DirectP50us, res.GatewayP99us-res.DirectP99us

	// Throughput, alternating legs twice to share out drift.
	var dn, gn int64
	for round := 0; round < 2; round++ {
		n, err := throughput(ctx, upURL, "", "echo", o)
		if err != nil {
			return err
		}
		dn += n
		n, err = throughput(ctx, gw.url, gw.token, "up__echo", o)
		if err != nil {
			return err
		}
		gn += n
	}
	secs := 2 * o.duration.Seconds()
	res.DirectCallsPerS, res.GatewayCallsPerS = float64(dn)/secs, float64(gn)/secs
	res.ThroughputRatio = res.GatewayCallsPerS / res.DirectCallsPerS

	if err := openSessions(ctx, gw, o, &res); err != nil {
		return err
	}
	print(res)
	if o.jsonOut != "" {
		b, _ := json.MarshalIndent(res, "", "  ")
		return os.WriteFile(o.jsonOut, append(b, '\n'), 0o644)
	}
	return nil
}

func openSessions(ctx context.Context, gw *gateway, o options, res *Results) error {
	if o.sessions == 0 {
		return nil
	}
	before, err := rss(gw.pid())
	if err != nil {
		return err
	}
	var open []*mcp.ClientSession
	defer func() {
		for _, s := range open {
			s.Close()
		}
	}()
	for i := 0; i < o.sessions; i++ {
		s, err := connect(ctx, gw.url, gw.token, o.protocol)
		if err != nil {
			return fmt.Errorf("session %d: %w", i, err)
		}
		open = append(open, s)
	}
	time.Sleep(500 * time.Millisecond)
	if res.SessionsRSSKiB, err = rss(gw.pid()); err != nil {
		return err
	}
	res.PerSessionBytes = float64(res.SessionsRSSKiB-before) * 1024 / float64(o.sessions)
	return nil
}

func throughput(ctx context.Context, url, token, tool string, o options) (int64, error) {
	var n atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, o.workers)
	deadline := time.Now().Add(o.duration)
	for w := 0; w < o.workers; w++ {
		s, err := connect(ctx, url, token, o.protocol)
		if err != nil {
			return 0, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer s.Close()
			for time.Now().Before(deadline) {
				if _, err := s.CallTool(ctx, &mcp.CallToolParams{Name: tool, Arguments: map[string]any{"message": "x"}}); err != nil {
					errc <- err
					return
				}
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	close(errc)
	return n.Load(), <-errc
}

func pct(ds []time.Duration, p int) float64 {
	s := slices.Clone(ds)
	slices.Sort(s)
	return float64(s[(len(s)-1)*p/100].Microseconds())
}

func print(r Results) {
	fmt.Printf("MCP protocol %s on both legs; gateway store.synchronous=%s\n\n", r.Protocol, r.Sync)
	fmt.Printf("sequential tools/call, %d per leg, interleaved\n", r.Calls)
	fmt.Printf("  %-10s p50 %8.0f µs   p99 %8.0f µs\n", "direct", r.DirectP50us, r.DirectP99us)
	fmt.Printf("  %-10s p50 %8.0f µs   p99 %8.0f µs\n", "gateway", r.GatewayP50us, r.GatewayP99us)
	fmt.Printf("  %-10s p50 %8.0f µs   p99 %8.0f µs   (ratio p50 %.2f)\n\n", "added", r.AddedP50us, r.AddedP99us, r.GatewayP50us/r.DirectP50us)
	fmt.Printf("throughput, %d concurrent clients\n", r.Workers)
	fmt.Printf("  direct  %8.0f calls/s\n  gateway %8.0f calls/s   (ratio %.2f)\n\n", r.DirectCallsPerS, r.GatewayCallsPerS, r.ThroughputRatio)
	fmt.Printf("gateway memory\n  idle             %6d KiB RSS\n  %d sessions   %6d KiB RSS   (%.0f bytes per idle session)\n",
		r.IdleRSSKiB, r.Sessions, r.SessionsRSSKiB, r.PerSessionBytes)
}

// startUpstream serves an echo tool over streamable HTTP on loopback.
func startUpstream(ctx context.Context) (string, error) {
	srv := mcp.NewServer(&mcp.Implementation{Name: "bench-upstream", Version: "1"}, nil)
	srv.AddTool(&mcp.Tool{Name: "echo", Description: "Echo the message.", InputSchema: map[string]any{
		"type": "object", "properties": map[string]any{"message": map[string]any{"type": "string"}},
	}}, func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		var a struct{ Message string }
		json.Unmarshal(req.Params.Arguments, &a)
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: a.Message}}}, nil
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, nil)
	go http.Serve(ln, h)
	go func() { <-ctx.Done(); ln.Close() }()
	return "http://" + ln.Addr().String() + "/mcp", nil
}

type gateway struct {
	cmd   *exec.Cmd
	url   string
	token string
}

func (g *gateway) pid() int { return g.cmd.Process.Pid }

func (g *gateway) stop() {
	g.cmd.Process.Signal(os.Interrupt)
	g.cmd.Wait()
}

func startGateway(ctx context.Context, o options, upURL string) (*gateway, error) {
	dir, err := os.MkdirTemp("", "portcullis-bench-")
	if err != nil {
		return nil, err
	}
	agentPort, adminPort := freePort(), freePort()
	cfg := fmt.Sprintf(`version: 1
data_dir: %s
listen: {address: "127.0.0.1:%d", admin: "127.0.0.1:%d"}
policy: {paths: [policy.cedar]}
agents: [{name: bench, roles: [bench]}]
upstreams:
  - name: up
    http: {url: %q}
    protocol_version: %q
limits: {max_sessions: %d, agent_calls_per_minute: -1, repeat_call_limit: -1}
store: {synchronous: %s}
log: {level: warn}
`, filepath.Join(dir, "data"), agentPort, adminPort, upURL, o.protocol, o.sessions+100, o.sync)
	if err := os.WriteFile(filepath.Join(dir, "gw.yaml"), []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	pol := `permit (principal in Role::"bench", action == Action::"call_tool", resource in Upstream::"up");`
	if err := os.WriteFile(filepath.Join(dir, "policy.cedar"), []byte(pol), 0o600); err != nil {
		return nil, err
	}
	out, err := exec.Command(o.binary, "token", "issue", "--config", filepath.Join(dir, "gw.yaml"), "--agent", "bench", "--ttl", "1h").Output()
	if err != nil {
		return nil, fmt.Errorf("issue token: %w", err)
	}
	cmd := exec.CommandContext(ctx, o.binary, "serve", "--config", filepath.Join(dir, "gw.yaml"))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	g := &gateway{cmd: cmd, url: fmt.Sprintf("http://127.0.0.1:%d/mcp", agentPort), token: strings.TrimSpace(string(out))}
	for i := 0; i < 200; i++ {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", adminPort))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return g, nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	g.stop()
	return nil, errors.New("gateway did not become ready")
}

func freePort() int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

type bearer struct{ token string }

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	if b.token != "" {
		r = r.Clone(r.Context())
		r.Header.Set("Authorization", "Bearer "+b.token)
	}
	return transport.RoundTrip(r)
}

var transport = &http.Transport{MaxIdleConnsPerHost: 256, MaxConnsPerHost: 0}

func connect(ctx context.Context, url, token, protocol string) (*mcp.ClientSession, error) {
	c := mcp.NewClient(&mcp.Implementation{Name: "bench-client", Version: "1"}, nil)
	t := &mcp.StreamableClientTransport{Endpoint: url, HTTPClient: &http.Client{Transport: bearer{token}}, DisableStandaloneSSE: true}
	return c.Connect(ctx, t, &mcp.ClientSessionOptions{ProtocolVersion: protocol})
}

// rss reads a process's resident set size in KiB from /proc.
func rss(pid int) (int, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			return strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
		}
	}
	return 0, errors.New("no VmRSS")
}
