package main

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/ops"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startServe starts `portcullis serve --config cfg` (with env added) and
// waits until it serves (at most a minute). It returns the process (killed
// when the test ends) and the agent and admin URLs it logged (a
// configuration can listen on port 0); a gateway that stops or hangs
// first (a port taken meanwhile, say) fails the test with what it logged.
func startServe(t *testing.T, cfg string, env []string) (cmd *exec.Cmd, agents, admin string) {
	t.Helper()
	cmd = exec.Command(os.Args[0], "serve", "--config", cfg)
	cmd.Env = append(append(os.Environ(), "PORTCULLIS_TEST_MAIN=1"), env...)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	serving := make(chan string, 1)
	var mu sync.Mutex
	var lines []string
	go func() {
		defer close(serving)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if strings.Contains(line, "gateway serving") {
				serving <- line
				io.Copy(io.Discard, stderr) // the rest, unread
				return
			}
			mu.Lock()
			lines = append(lines, line)
			mu.Unlock()
		}
		io.Copy(io.Discard, stderr)
	}()
	logged := func() string { mu.Lock(); defer mu.Unlock(); return strings.Join(lines, "\n") }
	select {
	case line, ok := <-serving:
		if !ok {
			t.Fatalf("portcullis serve stopped before serving:\n%s", logged())
		}
		a := regexp.MustCompile(`agents=(\S+)`).FindStringSubmatch(line)
		ad := regexp.MustCompile(`admin=(\S+)`).FindStringSubmatch(line)
		if a == nil || ad == nil {
			t.Fatalf("no agent or admin URL in %q", line)
		}
		return cmd, strings.Trim(a[1], `"`), strings.Trim(ad[1], `"`)
	case <-time.After(time.Minute):
		t.Fatalf("portcullis serve not serving after a minute:\n%s", logged())
	}
	return nil, "", ""
}

// crashConfig is a gateway on the demo upstream with external checkpoint
// copies and a short checkpoint interval.
func crashConfig(t *testing.T) (dir, cfg string) {
	dir = t.TempDir()
	writeFile(t, filepath.Join(dir, "p.cedar"), `permit (principal, action == Action::"call_tool", resource in Upstream::"demo") when { resource.read_only_hint };`)
	cfg = filepath.Join(dir, "c.yaml")
	writeFile(t, cfg, `version: 1
data_dir: data
listen: {address: "127.0.0.1:0", admin: "127.0.0.1:0"}
policy: {paths: [p.cedar]}
agents: [{name: loader}]
upstreams: [{name: demo, builtin: demo}]
audit: {checkpoint_interval: 1s, checkpoint_copies: [copies]}
limits: {agent_calls_per_minute: -1, repeat_call_limit: -1}
`)
	return dir, cfg
}

// TestKill9UnderLoadLosesNoAcknowledgedEvent: every call answered before
// the gateway is killed has its decision in the log, and the log verifies.
func TestKill9UnderLoadLosesNoAcknowledgedEvent(t *testing.T) {
	t.Parallel()
	dir, cfg := crashConfig(t)
	tok, _, err := portcullis(t, nil, "token", "issue", "--config", cfg, "--agent", "loader", "--ttl", "10m")
	if err != nil {
		t.Fatal(err)
	}
	cmd, endpoint, _ := startServe(t, cfg, nil)
	httpc := &http.Client{Transport: roundTripper(func(r *http.Request) (*http.Response, error) {
		r = r.Clone(r.Context())
		r.Header.Set("Authorization", "Bearer "+strings.TrimSpace(tok))
		return http.DefaultTransport.RoundTrip(r)
	})}
	var acked atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		s, err := mcp.NewClient(&mcp.Implementation{Name: "loader"}, nil).Connect(context.Background(),
			&mcp.StreamableClientTransport{Endpoint: endpoint, HTTPClient: httpc, MaxRetries: -1}, nil)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				res, err := s.CallTool(context.Background(), &mcp.CallToolParams{Name: "demo__list_files", Arguments: map[string]any{}})
				if err != nil {
					return // the gateway is gone
				}
				if !res.IsError {
					acked.Add(1)
				}
			}
		}()
	}
	time.Sleep(2500 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	wg.Wait()
	n := acked.Load()
	if n < 50 {
		t.Fatalf("only %d calls acknowledged before the kill; load too light to mean anything", n)
	}
	out, _, err := portcullis(t, nil, "audit", "tail", "--config", cfg, "--json", "-n", "10000")
	if err != nil {
		t.Fatal(err)
	}
	var recorded int64
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, `"outcome":"allow"`) && strings.Contains(line, `"action":"call_tool"`) {
			recorded++
		}
	}
	if recorded < n {
		t.Fatalf("%d calls acknowledged, %d allow decisions in the log", n, recorded)
	}
	out, stderrOut, err := portcullis(t, nil, "audit", "verify", "--config", cfg, "--key", filepath.Join(dir, "data", "keys", "audit-log.pub"), "--checkpoints", filepath.Join(dir, "copies"))
	if err != nil || !strings.Contains(out, "log verified") {
		t.Fatalf("verify after kill -9: %v\n%s%s", err, out, stderrOut)
	}
	// Restarting recovers the tree from the store and goes on appending.
	if _, _, err := portcullis(t, nil, "audit", "checkpoint", "--config", cfg); err != nil {
		t.Fatal(err)
	}
	out, _, err = portcullis(t, nil, "audit", "verify", "--config", cfg, "--key", filepath.Join(dir, "data", "keys", "audit-log.pub"))
	if err != nil || !strings.Contains(out, "log verified") {
		t.Fatalf("verify after checkpoint: %v\n%s", err, out)
	}
	t.Logf("%d acknowledged, %d recorded", n, recorded)
}

func TestAuditVerifyProveAndTamper(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	writeFile(t, cfg, "version: 1\ndata_dir: data\nagents: [{name: a}]\n")
	for i := 0; i < 5; i++ {
		if _, _, err := portcullis(t, nil, "token", "issue", "--config", cfg, "--agent", "a"); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := portcullis(t, nil, "audit", "checkpoint", "--config", cfg); err != nil {
		t.Fatal(err)
	}
	pub := filepath.Join(dir, "auditor.pub")
	b, _ := os.ReadFile(filepath.Join(dir, "data", "keys", "audit-log.pub"))
	writeFile(t, pub, string(b))
	out, _, err := portcullis(t, nil, "audit", "verify", "--data-dir", filepath.Join(dir, "data"), "--key", pub)
	if err != nil || !strings.Contains(out, "5 events") {
		t.Fatalf("verify: %v %s", err, out)
	}
	proof, _, err := portcullis(t, nil, "audit", "prove", "3", "--data-dir", filepath.Join(dir, "data"))
	if err != nil {
		t.Fatal(err)
	}
	pf := filepath.Join(dir, "proof.json")
	writeFile(t, pf, proof)
	out, _, err = portcullis(t, nil, "audit", "verify-proof", pf, "--key", pub)
	if err != nil || !strings.Contains(out, "event 3 is in log") {
		t.Fatalf("verify-proof: %v %s", err, out)
	}
	tampered := strings.Replace(proof, `"tree_size": 5`, `"tree_size": 4`, 1)
	writeFile(t, pf, tampered)
	if _, _, err := portcullis(t, nil, "audit", "verify-proof", pf, "--key", pub); err == nil {
		t.Error("tampered proof verified")
	}
	// Re-indexing an event under another agent hides it from queries by
	// agent; verification must say so.
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "data", ops.StoreFile))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`UPDATE events SET agent = 'b' WHERE seq = 2`); err != nil {
		t.Fatal(err)
	}
	out, _, err = portcullis(t, nil, "audit", "verify", "--data-dir", filepath.Join(dir, "data"), "--key", pub)
	if err == nil || !strings.Contains(out, "event 2's index columns (agent) differ from its body") {
		t.Errorf("verify of a re-indexed event: %v\n%s", err, out)
	}
}

// TestAuditTracePullsAChainAcrossAgents: an orchestrator's request and the
// request of the agent it delegated to carry one W3C trace; one query pulls
// both, and a request ID pulls its own events.
func TestAuditTracePullsAChainAcrossAgents(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "p.cedar"), `permit (principal, action == Action::"call_tool", resource in Upstream::"demo");`)
	cfg := filepath.Join(dir, "c.yaml")
	writeFile(t, cfg, "version: 1\ndata_dir: data\nlisten: {address: \"127.0.0.1:0\", admin: \"127.0.0.1:0\"}\npolicy: {paths: [p.cedar]}\nagents: [{name: orchestrator}, {name: worker}]\nupstreams: [{name: demo, builtin: demo}]\n")
	cmd, endpoint, _ := startServe(t, cfg, nil)
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	const traceID = "5b8efff798038103d269b633813fc60c"
	for _, agent := range []string{"orchestrator", "worker"} {
		tok, _, err := portcullis(t, nil, "token", "issue", "--config", cfg, "--agent", agent)
		if err != nil {
			t.Fatal(err)
		}
		httpc := &http.Client{Transport: roundTripper(func(r *http.Request) (*http.Response, error) {
			r = r.Clone(r.Context())
			r.Header.Set("Authorization", "Bearer "+strings.TrimSpace(tok))
			return http.DefaultTransport.RoundTrip(r)
		})}
		s, err := mcp.NewClient(&mcp.Implementation{Name: agent}, nil).Connect(context.Background(),
			&mcp.StreamableClientTransport{Endpoint: endpoint, HTTPClient: httpc}, nil)
		if err != nil {
			t.Fatal(err)
		}
		p := &mcp.CallToolParams{Name: "demo__list_files", Arguments: map[string]any{}, Meta: mcp.Meta{"traceparent": "00-" + traceID + "-a1b2c3d4e5f60718-01"}}
		if _, err := s.CallTool(context.Background(), p); err != nil {
			t.Fatal(err)
		}
		s.Close()
	}
	out, _, err := portcullis(t, nil, "audit", "trace", traceID, "--config", cfg, "--json")
	if err != nil || !strings.Contains(out, `"agent":"orchestrator"`) || !strings.Contains(out, `"agent":"worker"`) {
		t.Fatalf("trace %s: %v\n%s", traceID, err, out)
	}
	var reqID string
	for _, line := range strings.Split(out, "\n") {
		if i := strings.Index(line, `"request_id":"`); i >= 0 && strings.Contains(line, "worker") {
			reqID = strings.SplitN(line[i+14:], `"`, 2)[0]
		}
	}
	out, _, err = portcullis(t, nil, "audit", "trace", reqID, "--config", cfg)
	if err != nil || strings.Count(strings.TrimSpace(out), "\n") != 0 || !strings.Contains(out, "worker") {
		t.Errorf("trace by request %s: %v\n%s", reqID, err, out)
	}
}

// TestAuditReplayExitStatus: replaying a decision that the current policy
// decides differently exits 3 (for CI), the same decision 0.
func TestAuditReplayExitStatus(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	permit := `@id("read") permit (principal, action == Action::"call_tool", resource in Upstream::"fs");`
	writeFile(t, filepath.Join(dir, "p.cedar"), permit)
	cfgPath := filepath.Join(dir, "c.yaml")
	writeFile(t, cfgPath, "version: 1\ndata_dir: data\npolicy: {paths: [p.cedar]}\nagents: [{name: a}]\n")
	withData(t, cfgPath, func(ctx context.Context, o *ops.Ops) {
		cfg, err := config.Load(cfgPath)
		if err != nil {
			t.Fatal(err)
		}
		set, srcs, err := ops.LoadBundle(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := ops.SaveBundle(ctx, o.Store(), set, srcs); err != nil {
			t.Fatal(err)
		}
		e := audit.Decision(audit.TypeDecision, time.Now(), audit.Subject{Agent: "a", RequestID: "r1"}, "tools/call")
		e.Action, e.Target, e.Upstream, e.Outcome, e.PolicyVersion = "call_tool", "fs__read", "fs", audit.OutcomeAllow, set.Version()
		e.Input = &audit.Input{Kind: "tool", Arguments: json.RawMessage(`{}`)}
		if err := audit.WriteNow(ctx, o.Store(), e); err != nil {
			t.Fatal(err)
		}
	})
	if out, stderr, err := portcullis(t, nil, "audit", "replay", "1", "--config", cfgPath); err != nil {
		t.Fatalf("same policy: %v\n%s%s", err, out, stderr)
	}
	writeFile(t, filepath.Join(dir, "p.cedar"), "// nothing permitted any more\n")
	out, stderr, err := portcullis(t, nil, "audit", "replay", "1", "--config", cfgPath)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != ExitDecisionDiffers || !strings.Contains(stderr, "decides differently") {
		t.Fatalf("changed policy: %v\n%s%s", err, out, stderr)
	}
}
