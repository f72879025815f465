// Package benchkit holds what the benchmark commands share: an upstream
// to measure against, the gateway and the bare hop as processes under
// measurement, MCP client sessions, and process figures read from /proc.
package benchkit

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
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
	"sync/atomic"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// UpstreamSessions counts sessions initialised with StartUpstream's server.
var UpstreamSessions atomic.Int64

// StartUpstream serves a payload tool over streamable HTTP on loopback: it
// returns text of the requested size (prose, as tools mostly return).
func StartUpstream(ctx context.Context) (string, error) {
	srv := mcp.NewServer(&mcp.Implementation{Name: "bench-upstream", Version: "1"}, &mcp.ServerOptions{
		InitializedHandler: func(context.Context, *mcp.InitializedRequest) { UpstreamSessions.Add(1) },
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

// Proc is a proxy process under measurement.
type Proc struct {
	Cmd     *exec.Cmd
	URL     string
	Token   string            // the first agent's bearer token
	Tokens  map[string]string // by agent
	Metrics string            // the gateway's /metrics
	Admin   string            // the gateway's admin address
	Dir     string            // a gateway's data directory
	Config  string            // a gateway's configuration file
}

// PID is the process's id.
func (p *Proc) PID() int { return p.Cmd.Process.Pid }

// Stop interrupts the process and waits for it, killing it after 10 s:
// a process started with SIGINT ignored (a background job of a
// non-interactive shell, and its children) would never stop otherwise.
func (p *Proc) Stop() {
	p.Cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { p.Cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		p.Cmd.Process.Kill()
		<-done
	}
}

// Allocated is the gateway's total bytes allocated so far (0 without
// metrics).
func (p *Proc) Allocated() (float64, error) {
	return p.Metric("go_memstats_alloc_bytes_total ")
}

// EventsPerSync is how many audit events an fsync covered on average.
func (p *Proc) EventsPerSync() float64 {
	sum, _ := p.Metric(`portcullis_audit_sync_events_sum{result="ok"} `)
	n, _ := p.Metric(`portcullis_audit_sync_events_count{result="ok"} `)
	if n == 0 {
		return 0
	}
	return sum / n
}

// lines calls fn with each line of /metrics until it returns false.
func (p *Proc) lines(fn func(line string) bool) error {
	if p.Metrics == "" {
		return nil
	}
	resp, err := http.Get(p.Metrics)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() && fn(sc.Text()) {
	}
	return sc.Err()
}

// Samples reads every sample of /metrics whose line begins with prefix,
// keyed by the rest of its name and labels.
func (p *Proc) Samples(prefix string) (map[string]float64, error) {
	out := map[string]float64{}
	var perr error
	err := p.lines(func(line string) bool {
		rest, ok := strings.CutPrefix(line, prefix)
		i := strings.LastIndexByte(rest, ' ')
		if !ok || i < 0 {
			return true
		}
		var v float64
		v, perr = strconv.ParseFloat(rest[i+1:], 64)
		out[rest[:i]] = v
		return perr == nil
	})
	if err := errors.Join(err, perr); err != nil {
		return nil, err
	}
	return out, nil
}

// Metric reads the first sample of /metrics whose line begins with prefix.
func (p *Proc) Metric(prefix string) (float64, error) {
	if p.Metrics == "" {
		return 0, nil
	}
	var v float64
	var perr error
	found := false
	err := p.lines(func(line string) bool {
		rest, ok := strings.CutPrefix(line, prefix)
		if ok {
			found = true
			v, perr = strconv.ParseFloat(rest, 64)
		}
		return !ok
	})
	switch {
	case err != nil || perr != nil:
		return 0, errors.Join(err, perr)
	case !found:
		return 0, errors.New("no " + prefix)
	}
	return v, nil
}

// StartBareHop runs bench/barehop's binary in front of upURL.
func StartBareHop(ctx context.Context, binary, upURL string) (*Proc, error) {
	dir, err := os.MkdirTemp("", "barehop-")
	if err != nil {
		return nil, err
	}
	target := strings.TrimSuffix(upURL, "/mcp")
	addrFile := filepath.Join(dir, "addr")
	cmd := exec.CommandContext(ctx, binary, "-target", target, "-addr-file", addrFile)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	for i := 0; i < 200; i++ {
		if b, err := os.ReadFile(addrFile); err == nil && len(b) > 0 {
			return &Proc{Cmd: cmd, URL: "http://" + string(b) + "/mcp"}, nil
		}
		time.Sleep(25 * time.Millisecond)
	}
	cmd.Process.Kill()
	return nil, errors.New("bare hop did not start")
}

// Gateway is how StartGateway runs portcullis serve: in front of one
// HTTP upstream named "up", with a bearer token per agent, Cedar allowing
// the agents' calls, the default screening and the durable audit log.
type Gateway struct {
	Binary      string
	UpstreamURL string
	Protocol    string   // pinned on the upstream
	Agents      []string // default: bench
	MaxSessions int      // agent sessions
	Sync        string   // store.synchronous
	AuditSync   string   // audit.sync
	SyncWindow  string   // audit.sync_window ("": its default)
	Profile     string   // PORTCULLIS_CPUPROFILE
	MemProfile  string   // PORTCULLIS_MEMPROFILE
	// Upstream is extra YAML for the upstream's entry (indented by four).
	Upstream string
	// Postgres, if set, is the URL of the PostgreSQL store (a fleet's);
	// Keys is then a keys directory to copy into the data directory
	// before the start (the fleet's shared keys).
	Postgres string
	Keys     string
}

func syncWindow(w string) string {
	if w == "" {
		return ""
	}
	return fmt.Sprintf(", sync_window: %q", w)
}

// StartGateway runs the gateway and waits until it is ready.
func StartGateway(ctx context.Context, o Gateway) (*Proc, error) {
	if len(o.Agents) == 0 {
		o.Agents = []string{"bench"}
	}
	dir, err := os.MkdirTemp("", "portcullis-bench-")
	if err != nil {
		return nil, err
	}
	agentPort, adminPort := FreePort(), FreePort()
	var agents strings.Builder
	for _, a := range o.Agents {
		fmt.Fprintf(&agents, "  - {name: %s, roles: [bench]}\n", a)
	}
	cfg := fmt.Sprintf(`version: 1
data_dir: %s
listen: {address: "127.0.0.1:%d", admin: "127.0.0.1:%d"}
policy: {paths: [policy.cedar]}
agents:
%supstreams:
  - name: up
    http: {url: %q}
    protocol_version: %q
%slimits: {max_sessions: %d, agent_calls_per_minute: -1, repeat_call_limit: -1}
store: {synchronous: %s%s}
audit: {sync: %s%s}
log: {level: warn}
`, filepath.Join(dir, "data"), agentPort, adminPort, agents.String(), o.UpstreamURL, o.Protocol, o.Upstream, o.MaxSessions, o.Sync, storeURL(o.Postgres), o.AuditSync, syncWindow(o.SyncWindow))
	if o.Keys != "" {
		if err := os.CopyFS(filepath.Join(dir, "data", "keys"), os.DirFS(o.Keys)); err != nil {
			return nil, err
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "gw.yaml"), []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	pol := `permit (principal in Role::"bench", action == Action::"call_tool", resource in Upstream::"up");`
	if err := os.WriteFile(filepath.Join(dir, "policy.cedar"), []byte(pol), 0o600); err != nil {
		return nil, err
	}
	env := append(os.Environ(), "BENCH_STORE_URL="+o.Postgres)
	tokens := map[string]string{}
	for _, a := range o.Agents {
		c := exec.Command(o.Binary, "token", "issue", "--config", filepath.Join(dir, "gw.yaml"), "--agent", a, "--ttl", "1h", "--by", "bench")
		c.Env = env
		out, err := c.Output()
		if err != nil {
			return nil, fmt.Errorf("issue token: %w", err)
		}
		tokens[a] = strings.TrimSpace(string(out))
	}
	cmd := exec.CommandContext(ctx, o.Binary, "serve", "--config", filepath.Join(dir, "gw.yaml"))
	cmd.Stderr = os.Stderr
	cmd.Env = env
	if o.MemProfile != "" {
		cmd.Env = append(cmd.Env, "PORTCULLIS_MEMPROFILE="+o.MemProfile)
	}
	if o.Profile != "" {
		cmd.Env = append(cmd.Env, "PORTCULLIS_CPUPROFILE="+o.Profile)
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	g := &Proc{Dir: filepath.Join(dir, "data"), Config: filepath.Join(dir, "gw.yaml"), Cmd: cmd, URL: fmt.Sprintf("http://127.0.0.1:%d/mcp", agentPort), Token: tokens[o.Agents[0]], Tokens: tokens,
		Metrics: fmt.Sprintf("http://127.0.0.1:%d/metrics", adminPort), Admin: fmt.Sprintf("127.0.0.1:%d", adminPort)}
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
	g.Stop()
	return nil, errors.New("gateway did not become ready")
}

func storeURL(dsn string) string {
	if dsn == "" {
		return ""
	}
	return ", postgres: {from_env: BENCH_STORE_URL}"
}

// FreePort is a loopback TCP port free a moment ago.
func FreePort() int {
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

// Connect opens a client session with connections of its own, as a
// separate agent process would have.
func Connect(ctx context.Context, url, token, protocol string) (*mcp.ClientSession, error) {
	c := mcp.NewClient(&mcp.Implementation{Name: "bench-client", Version: "1"}, nil)
	hc := &http.Client{Transport: bearer{token, &http.Transport{MaxIdleConnsPerHost: 4}}}
	t := &mcp.StreamableClientTransport{Endpoint: url, HTTPClient: hc, DisableStandaloneSSE: true}
	return c.Connect(ctx, t, &mcp.ClientSessionOptions{ProtocolVersion: protocol})
}

// RSS reads a process's resident set size in KiB from /proc.
func RSS(pid int) (int, error) {
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

// CPUTime reads a process's user and system CPU time from /proc.
func CPUTime(pid int) (time.Duration, error) {
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

// MachineCPU reads the machine's CPU time from /proc/stat: all of it, and
// the part the hypervisor gave other tenants (steal), in clock ticks. On a
// shared VM a run with much steal measures the neighbours as well.
func MachineCPU() (total, steal int64, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0, errors.New("/proc/stat: no cpu line")
	}
	for i, v := range f[1:] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/stat: %w", err)
		}
		if i >= 8 {
			break // guest time is counted in user time already
		}
		total += n
		if i == 7 {
			steal = n
		}
	}
	return total, steal, nil
}

// Pct is the p-th percentile of ds in microseconds.
func Pct(ds []time.Duration, p int) float64 {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return float64(s[(len(s)-1)*p/100].Microseconds())
}
