// Command roundtrip measures what the gateway adds to an MCP tools/call,
// against a bare reverse-proxy hop measured in the same run.
//
// It serves a Go streamable-HTTP upstream (a tool returning a payload of
// the requested size) in this process, and runs as separate processes the
// bare hop (bench/barehop) and the portcullis gateway in front of it, with
// authentication, Cedar, the default content screening and the durable
// audit log on. Interleaved in one run so that machine noise hits all legs
// alike, for each result size it measures:
//
//   - sequential round trips direct, through the bare hop and through the
//     gateway (p50, p99, and what each proxy adds);
//   - throughput with concurrent clients, and each proxy process's CPU per
//     call (from /proc) and, for the gateway, bytes allocated per call
//     (from its Go runtime metrics);
//
// then the gateway's resident memory idle and with N open agent sessions
// (each with its own upstream session), and the time to open one.
//
// The MCP protocol version is pinned on both legs (-protocol). Usage:
//
//	go run ./bench/roundtrip -portcullis ./portcullis -barehop ./barehop [-json out.json]
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
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
	binary, barehop, protocol, jsonOut, sync, auditSync, profile string
	calls, workers, sessions, runs                               int
	duration                                                     time.Duration
	sizes                                                        []int
}

func main() {
	var o options
	var sizes string
	flag.StringVar(&o.binary, "portcullis", "./portcullis", "portcullis binary")
	flag.StringVar(&o.barehop, "barehop", "./barehop", "bare reverse-proxy binary (bench/barehop)")
	flag.StringVar(&o.protocol, "protocol", "2025-11-25", "MCP protocol version on both legs")
	flag.StringVar(&o.jsonOut, "json", "", "also write the results as JSON to this file")
	flag.StringVar(&o.sync, "sync", "full", "store.synchronous of the gateway (full or normal)")
	flag.StringVar(&o.auditSync, "audit-sync", "before_answer", "audit.sync of the gateway (before_answer or before_relay)")
	flag.StringVar(&sizes, "sizes", "64,4096", "result sizes in bytes")
	flag.StringVar(&o.profile, "cpuprofile", "", "write the gateway's CPU profile here")
	flag.IntVar(&o.calls, "calls", 2000, "sequential calls per leg and size")
	flag.IntVar(&o.workers, "workers", 8, "concurrent clients in the throughput phase")
	flag.IntVar(&o.runs, "runs", 1, "measure each size this many times and report the medians (ratios: the median of each run's ratio)")
	flag.IntVar(&o.sessions, "sessions", 500, "open agent sessions for the memory measurement")
	flag.DurationVar(&o.duration, "duration", 5*time.Second, "length of each throughput phase")
	flag.Parse()
	for _, s := range strings.Split(sizes, ",") {
		n, err := strconv.Atoi(s)
		if err != nil {
			fmt.Fprintln(os.Stderr, "roundtrip: -sizes:", err)
			os.Exit(2)
		}
		o.sizes = append(o.sizes, n)
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "roundtrip:", err)
		os.Exit(1)
	}
}

// Leg is one path to the upstream.
type Leg struct {
	P50us, P99us     float64
	AddedP50us       float64 `json:",omitempty"`
	CallsPerS        float64
	CPUPerCallUs     float64 `json:",omitempty"` // the proxy process's CPU per call
	AllocPerCallByte float64 `json:",omitempty"`
}

// Size is the results for one result size.
type Size struct {
	Bytes                            int
	Direct, Bare, Gateway            Leg
	AddedP50Ratio, CPURatio, TPRatio float64 // gateway over bare hop
}

// Results are what the harness prints.
type Results struct {
	Protocol, Sync, AuditSync string
	Calls, Workers, Runs      int
	Sizes                     []Size
	IdleRSSKiB                int
	Sessions                  int
	SessionsRSSKiB            int
	PerSessionBytes           float64
	SessionOpenDirectUs       float64
	SessionOpenGatewayUs      float64
	UpstreamSessionsOpened    int
	EventsPerSync             float64 // audit events each fsync covered, on average
}

func run(o options) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	upURL, err := startUpstream(ctx)
	if err != nil {
		return err
	}
	bare, err := startBareHop(ctx, o, upURL)
	if err != nil {
		return err
	}
	defer bare.stop()
	gw, err := startGateway(ctx, o, upURL)
	if err != nil {
		return err
	}
	defer gw.stop()
	res := Results{Protocol: o.protocol, Sync: o.sync, AuditSync: o.auditSync, Calls: o.calls, Workers: o.workers, Runs: max(o.runs, 1), Sessions: o.sessions}
	time.Sleep(time.Second)
	if res.IdleRSSKiB, err = rss(gw.pid()); err != nil {
		return err
	}
	for _, size := range o.sizes {
		var runs []Size
		for range max(o.runs, 1) {
			s, err := measureSize(ctx, o, size, upURL, bare, gw)
			if err != nil {
				return err
			}
			runs = append(runs, s)
		}
		res.Sizes = append(res.Sizes, medianSize(runs))
	}
	res.EventsPerSync = gw.eventsPerSync()
	if err := openSessions(ctx, gw, upURL, o, &res); err != nil {
		return err
	}
	print(res)
	if o.jsonOut != "" {
		b, _ := json.MarshalIndent(res, "", "  ")
		return os.WriteFile(o.jsonOut, append(b, '\n'), 0o644)
	}
	return nil
}

// medianSize combines runs of one size metric by metric: each figure is
// the median of the runs' figures, each ratio the median of the runs'
// ratios (every ratio is between legs measured in the same run).
func medianSize(runs []Size) Size {
	med := func(get func(*Size) float64) float64 {
		v := make([]float64, len(runs))
		for i := range runs {
			v[i] = get(&runs[i])
		}
		slices.Sort(v)
		if n := len(v); n%2 == 0 {
			return (v[n/2-1] + v[n/2]) / 2
		}
		return v[len(v)/2]
	}
	legMed := func(get func(*Size) *Leg) Leg {
		return Leg{
			P50us:            med(func(s *Size) float64 { return get(s).P50us }),
			P99us:            med(func(s *Size) float64 { return get(s).P99us }),
			AddedP50us:       med(func(s *Size) float64 { return get(s).AddedP50us }),
			CallsPerS:        med(func(s *Size) float64 { return get(s).CallsPerS }),
			CPUPerCallUs:     med(func(s *Size) float64 { return get(s).CPUPerCallUs }),
			AllocPerCallByte: med(func(s *Size) float64 { return get(s).AllocPerCallByte }),
		}
	}
	return Size{
		Bytes:         runs[0].Bytes,
		Direct:        legMed(func(s *Size) *Leg { return &s.Direct }),
		Bare:          legMed(func(s *Size) *Leg { return &s.Bare }),
		Gateway:       legMed(func(s *Size) *Leg { return &s.Gateway }),
		AddedP50Ratio: med(func(s *Size) float64 { return s.AddedP50Ratio }),
		CPURatio:      med(func(s *Size) float64 { return s.CPURatio }),
		TPRatio:       med(func(s *Size) float64 { return s.TPRatio }),
	}
}

type leg struct {
	name, url, token, tool string
	proc                   *proc // nil for direct
}

func measureSize(ctx context.Context, o options, size int, upURL string, bare, gw *proc) (Size, error) {
	legs := []leg{
		{"direct", upURL, "", "payload", nil},
		{"bare", bare.url, "", "payload", bare},
		{"gateway", gw.url, gw.token, "up__payload", gw},
	}
	res := Size{Bytes: size}
	out := []*Leg{&res.Direct, &res.Bare, &res.Gateway}
	sessions := make([]*mcp.ClientSession, len(legs))
	for i, l := range legs {
		s, err := connect(ctx, l.url, l.token, o.protocol)
		if err != nil {
			return res, fmt.Errorf("connect %s: %w", l.name, err)
		}
		defer s.Close()
		sessions[i] = s
	}
	args := map[string]any{"size": size}
	call := func(s *mcp.ClientSession, tool string) (time.Duration, error) {
		start := time.Now()
		r, err := s.CallTool(ctx, &mcp.CallToolParams{Name: tool, Arguments: args})
		if err == nil && r.IsError {
			err = errors.New("tool error")
		}
		return time.Since(start), err
	}
	for i := 0; i < 300; i++ { // warm up every leg
		for j, l := range legs {
			if _, err := call(sessions[j], l.tool); err != nil {
				return res, fmt.Errorf("%s: %w", l.name, err)
			}
		}
	}
	lat := make([][]time.Duration, len(legs))
	for i := 0; i < o.calls; i++ {
		for j, l := range legs {
			d, err := call(sessions[j], l.tool)
			if err != nil {
				return res, fmt.Errorf("%s: %w", l.name, err)
			}
			lat[j] = append(lat[j], d)
		}
	}
	for j := range legs {
		out[j].P50us, out[j].P99us = pct(lat[j], 50), pct(lat[j], 99)
		if j > 0 {
			out[j].AddedP50us = out[j].P50us - out[0].P50us
		}
	}
	// Throughput, alternating legs twice to share out drift; each proxy's
	// CPU and (gateway) allocations over its own phases.
	var calls [3]int64
	var cpu [3]time.Duration
	var alloc [3]float64
	for round := 0; round < 2; round++ {
		for j, l := range legs {
			var c0 time.Duration
			var a0 float64
			if l.proc != nil {
				c0, _ = cpuTime(l.proc.pid())
				a0, _ = l.proc.allocated()
			}
			n, err := throughput(ctx, l.url, l.token, l.tool, args, o)
			if err != nil {
				return res, fmt.Errorf("%s throughput: %w", l.name, err)
			}
			calls[j] += n
			if l.proc != nil {
				c1, _ := cpuTime(l.proc.pid())
				a1, _ := l.proc.allocated()
				cpu[j] += c1 - c0
				alloc[j] += a1 - a0
			}
		}
	}
	secs := 2 * o.duration.Seconds()
	for j := range legs {
		out[j].CallsPerS = float64(calls[j]) / secs
		if j > 0 {
			out[j].CPUPerCallUs = float64(cpu[j].Microseconds()) / float64(calls[j])
			out[j].AllocPerCallByte = alloc[j] / float64(calls[j])
		}
	}
	res.AddedP50Ratio = res.Gateway.AddedP50us / res.Bare.AddedP50us
	res.CPURatio = res.Gateway.CPUPerCallUs / res.Bare.CPUPerCallUs
	res.TPRatio = res.Gateway.CallsPerS / res.Bare.CallsPerS
	return res, nil
}

// openSessions opens N agent sessions through the gateway (each opens its
// own session with the upstream) and measures memory and the time to open.
func openSessions(ctx context.Context, gw *proc, upURL string, o options, res *Results) error {
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
	var viaT, directT []time.Duration
	for i := 0; i < o.sessions; i++ {
		t0 := time.Now()
		s, err := connect(ctx, gw.url, gw.token, o.protocol)
		if err != nil {
			return fmt.Errorf("session %d: %w", i, err)
		}
		viaT = append(viaT, time.Since(t0))
		open = append(open, s)
		if i < 100 {
			t0 = time.Now()
			d, err := connect(ctx, upURL, "", o.protocol)
			if err != nil {
				return err
			}
			directT = append(directT, time.Since(t0))
			d.Close()
		}
	}
	time.Sleep(time.Second)
	if res.SessionsRSSKiB, err = rss(gw.pid()); err != nil {
		return err
	}
	res.PerSessionBytes = float64(res.SessionsRSSKiB-before) * 1024 / float64(o.sessions)
	res.SessionOpenGatewayUs, res.SessionOpenDirectUs = pct(viaT, 50), pct(directT, 50)
	res.UpstreamSessionsOpened = int(upstreamSessions.Load())
	return nil
}

func throughput(ctx context.Context, url, token, tool string, args map[string]any, o options) (int64, error) {
	var n atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, o.workers)
	sessions := make([]*mcp.ClientSession, o.workers)
	for w := range sessions {
		s, err := connect(ctx, url, token, o.protocol)
		if err != nil {
			return 0, err
		}
		sessions[w] = s
	}
	deadline := time.Now().Add(o.duration)
	for _, s := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				if _, err := s.CallTool(ctx, &mcp.CallToolParams{Name: tool, Arguments: args}); err != nil {
					errc <- err
					return
				}
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	for _, s := range sessions {
		s.Close()
	}
	close(errc)
	return n.Load(), <-errc
}

func pct(ds []time.Duration, p int) float64 {
	s := slices.Clone(ds)
	slices.Sort(s)
	return float64(s[(len(s)-1)*p/100].Microseconds())
}

func print(r Results) {
	fmt.Printf("MCP protocol %s on both legs; gateway store.synchronous=%s, audit.sync %s, default screening\n", r.Protocol, r.Sync, r.AuditSync)
	for _, s := range r.Sizes {
		fmt.Printf("\nresult of %d bytes: %d sequential calls per leg (interleaved), then %d concurrent clients; medians of %d runs\n", s.Bytes, r.Calls, r.Workers, r.Runs)
		fmt.Printf("  %-8s %9s %9s %10s %11s %12s %12s\n", "leg", "p50 µs", "p99 µs", "added µs", "calls/s", "CPU µs/call", "alloc B/call")
		for _, x := range []struct {
			n string
			l Leg
		}{{"direct", s.Direct}, {"bare hop", s.Bare}, {"gateway", s.Gateway}} {
			fmt.Printf("  %-8s %9.0f %9.0f %10.0f %11.0f %12.0f %12.0f\n", x.n, x.l.P50us, x.l.P99us, x.l.AddedP50us, x.l.CallsPerS, x.l.CPUPerCallUs, x.l.AllocPerCallByte)
		}
		fmt.Printf("  gateway / bare hop: added p50 %.2fx (aim ≤ 1.5), CPU per call %.2fx (aim ≤ 1.5), throughput %.2fx (aim ≥ 0.85)\n", s.AddedP50Ratio, s.CPURatio, s.TPRatio)
	}
	fmt.Printf("\naudit: %.1f events per fsync on average over the run\n", r.EventsPerSync)
	fmt.Printf("\ngateway memory\n  idle             %6d KiB RSS\n  %d sessions   %6d KiB RSS   (%.0f bytes per session, with its upstream session)\n",
		r.IdleRSSKiB, r.Sessions, r.SessionsRSSKiB, r.PerSessionBytes)
	fmt.Printf("opening a session (initialize): direct %.0f µs, through the gateway %.0f µs (p50; it opens the upstream session)\n", r.SessionOpenDirectUs, r.SessionOpenGatewayUs)
}

var upstreamSessions atomic.Int64

// startUpstream serves a payload tool over streamable HTTP on loopback: it
// returns text of the requested size (prose, as tools mostly return).
func startUpstream(ctx context.Context) (string, error) {
	srv := mcp.NewServer(&mcp.Implementation{Name: "bench-upstream", Version: "1"}, &mcp.ServerOptions{
		InitializedHandler: func(context.Context, *mcp.InitializedRequest) { upstreamSessions.Add(1) },
	})
	const prose = "The quarterly review covers shipping, support and the roadmap; each team reports progress, risks and next steps. "
	srv.AddTool(&mcp.Tool{Name: "payload", Description: "Return text of the given size.", InputSchema: map[string]any{
		"type": "object", "properties": map[string]any{"size": map[string]any{"type": "integer"}},
	}}, func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		var a struct{ Size int }
		json.Unmarshal(req.Params.Arguments, &a)
		text := strings.Repeat(prose, a.Size/len(prose)+1)[:max(a.Size, 0)]
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: text}}}, nil
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

// proc is a proxy process under measurement.
type proc struct {
	cmd     *exec.Cmd
	url     string
	token   string
	metrics string // the gateway's /metrics
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) stop() {
	p.cmd.Process.Signal(os.Interrupt)
	p.cmd.Wait()
}

// allocated is the gateway's total bytes allocated so far (0 without
// metrics).
func (p *proc) allocated() (float64, error) {
	return p.metric("go_memstats_alloc_bytes_total ")
}

// eventsPerSync is how many audit events an fsync covered on average.
func (p *proc) eventsPerSync() float64 {
	sum, _ := p.metric(`portcullis_audit_sync_events_sum{result="ok"} `)
	n, _ := p.metric(`portcullis_audit_sync_events_count{result="ok"} `)
	if n == 0 {
		return 0
	}
	return sum / n
}

func (p *proc) metric(prefix string) (float64, error) {
	if p.metrics == "" {
		return 0, nil
	}
	resp, err := http.Get(p.metrics)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), prefix); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	return 0, errors.New("no " + prefix)
}

func startBareHop(ctx context.Context, o options, upURL string) (*proc, error) {
	dir, err := os.MkdirTemp("", "barehop-")
	if err != nil {
		return nil, err
	}
	target := strings.TrimSuffix(upURL, "/mcp")
	addrFile := filepath.Join(dir, "addr")
	cmd := exec.CommandContext(ctx, o.barehop, "-target", target, "-addr-file", addrFile)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	for i := 0; i < 200; i++ {
		if b, err := os.ReadFile(addrFile); err == nil && len(b) > 0 {
			return &proc{cmd: cmd, url: "http://" + string(b) + "/mcp"}, nil
		}
		time.Sleep(25 * time.Millisecond)
	}
	cmd.Process.Kill()
	return nil, errors.New("bare hop did not start")
}

func startGateway(ctx context.Context, o options, upURL string) (*proc, error) {
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
audit: {sync: %s}
log: {level: warn}
`, filepath.Join(dir, "data"), agentPort, adminPort, upURL, o.protocol, o.sessions+100, o.sync, o.auditSync)
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
	if o.profile != "" {
		cmd.Env = append(os.Environ(), "PORTCULLIS_CPUPROFILE="+o.profile)
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	g := &proc{cmd: cmd, url: fmt.Sprintf("http://127.0.0.1:%d/mcp", agentPort), token: strings.TrimSpace(string(out)),
		metrics: fmt.Sprintf("http://127.0.0.1:%d/metrics", adminPort)}
	for i := 0; i < 200; i++ {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", adminPort))
		if err == nil {
			io.Copy(io.Discard, resp.Body)
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

type bearer struct {
	token string
	t     *http.Transport
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	if b.token != "" {
		r = r.Clone(r.Context())
		r.Header.Set("Authorization", "Bearer "+b.token)
	}
	return b.t.RoundTrip(r)
}

// connect opens a client session with connections of its own, as a
// separate agent process would have.
func connect(ctx context.Context, url, token, protocol string) (*mcp.ClientSession, error) {
	c := mcp.NewClient(&mcp.Implementation{Name: "bench-client", Version: "1"}, nil)
	hc := &http.Client{Transport: bearer{token, &http.Transport{MaxIdleConnsPerHost: 4}}}
	t := &mcp.StreamableClientTransport{Endpoint: url, HTTPClient: hc, DisableStandaloneSSE: true}
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

// cpuTime reads a process's user and system CPU time from /proc.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command (which may hold spaces) in parentheses.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / 100, nil // USER_HZ = 100
}
