package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"strconv"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/mcpproxy"
	"github.com/portcullis-dev/portcullis/internal/pgtest"
	"github.com/portcullis-dev/portcullis/internal/store"
	"github.com/portcullis-dev/portcullis/internal/token"
)

func TestVersionSaysMoreThanDev(t *testing.T) {
	t.Parallel()
	out, _, err := portcullis(t, nil, "--version")
	if err != nil || !strings.HasPrefix(out, "portcullis ") || !strings.Contains(out, "built by  go") {
		t.Fatalf("--version: %v %q", err, out)
	}
}

func TestStorePostgresConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for name, body := range map[string]string{
		"inline password": "version: 1\nstore: {postgres: {value: 'postgres://u:hunter2hunter2@db/p'}}\n",
		"from secret":     "version: 1\nstore: {postgres: {from_secret: db}}\n",
		"not postgres":    "version: 1\nstore: {postgres: {value: 'mysql://db/p'}}\n",
	} {
		p := filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+".yaml")
		writeFile(t, p, body)
		_, stderr, err := portcullis(t, nil, "config", "validate", p)
		if err == nil || !strings.Contains(stderr, "store.postgres") {
			t.Errorf("%s: accepted (stderr %q)", name, stderr)
		}
		if strings.Contains(stderr, "hunter2") {
			t.Errorf("%s: the error repeats the password: %s", name, stderr)
		}
	}
}

// portcullis migrate on the data directory's SQLite file and on a
// PostgreSQL database named by store.postgres (from the environment).
func TestMigrate(t *testing.T) {
	t.Parallel()
	want := "schema at version " + itoa(store.SchemaVersion())
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	writeFile(t, cfg, "version: 1\ndata_dir: data\n")
	if out, stderr, err := portcullis(t, nil, "migrate", "--status", "-c", cfg); err != nil || !strings.Contains(out, "sqlite store, schema version 0") {
		t.Fatalf("status of a new data directory: %v %q %s", err, out, stderr)
	}
	if out, stderr, err := portcullis(t, nil, "migrate", "-c", cfg); err != nil || !strings.Contains(out, want) {
		t.Fatalf("migrate: %v %q %s", err, out, stderr)
	}

	pg := filepath.Join(dir, "pg.yaml")
	writeFile(t, pg, "version: 1\ndata_dir: pgdata\nstore: {postgres: {from_env: TEST_STORE_URL}}\n")
	env := []string{"TEST_STORE_URL=" + pgtest.DSN(t)}
	if out, stderr, err := portcullis(t, env, "migrate", "--status", "-c", pg); err != nil || !strings.Contains(out, "postgres store, schema version 0") {
		t.Fatalf("status of a new database: %v %q %s", err, out, stderr)
	}
	if out, stderr, err := portcullis(t, env, "migrate", "-c", pg); err != nil || !strings.Contains(out, "PostgreSQL store") || !strings.Contains(out, want) {
		t.Fatalf("migrate: %v %q %s", err, out, stderr)
	}
	if out, _, err := portcullis(t, nil, "migrate", "-c", pg); err == nil || strings.Contains(out, "schema") {
		t.Fatalf("migrate without the URL's variable: %v %q", err, out)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// replica is one `portcullis serve` of a fleet.
type replica struct {
	cfg, addr, admin, data string
	cmd                    *exec.Cmd
}

func startReplica(t *testing.T, r *replica, env []string) {
	t.Helper()
	r.cmd, _, _ = startServe(t, r.cfg, env)
}

// startFleet starts n `portcullis serve` on one new PostgreSQL database,
// each with its own data directory and the keys of the first (as a fleet
// mounts them from one secret), all with policy and the configuration's
// extra lines (agents, limits). It returns them, the environment naming
// the database (FLEET_STORE) and its URL.
func startFleet(t *testing.T, n int, policy, extra string) ([]*replica, []string, string) {
	t.Helper()
	dsn := pgtest.DSN(t)
	env := []string{"FLEET_STORE=" + dsn}
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "p.cedar"), policy)
	rs := make([]*replica, n)
	for i := range rs {
		r := &replica{cfg: filepath.Join(dir, fmt.Sprintf("c%d.yaml", i+1)), addr: freeAddr(t), admin: freeAddr(t), data: filepath.Join(dir, fmt.Sprintf("data%d", i+1))}
		writeFile(t, r.cfg, fmt.Sprintf(`version: 1
data_dir: %s
listen: {address: %q, admin: %q}
policy: {paths: [p.cedar]}
upstreams: [{name: demo, builtin: demo}]
store: {postgres: {from_env: FLEET_STORE}}
%s`, r.data, r.addr, r.admin, extra))
		rs[i] = r
		if i > 0 {
			if err := os.CopyFS(filepath.Join(r.data, "keys"), os.DirFS(filepath.Join(rs[0].data, "keys"))); err != nil {
				t.Fatal(err)
			}
		}
		startReplica(t, r, env)
	}
	return rs, env, dsn
}

// TestFleet runs three `portcullis serve` on one PostgreSQL database, each
// with its own data directory (the keys copied from the first, as a fleet
// mounts them from one secret), and clients spread across them: a task
// budget of 10 holds across replicas under concurrent use; one replica
// killed (SIGKILL) under load loses no acknowledged event, its clients
// go on through another, and the fleet's one audit log verifies; an agent
// held for approval on one replica is released by an approval given
// through another; an agent revoked through one replica is refused on
// another within a second.
func TestFleet(t *testing.T) {
	t.Parallel()
	rs, env, dsn := startFleet(t, 3, `permit (principal, action == Action::"call_tool", resource in Upstream::"demo") when { resource.read_only_hint };
@approval("fleet test")
forbid (principal, action == Action::"call_tool", resource == Tool::"demo__list_files");`,
		"agents: [{name: worker}, {name: loader}]\nlimits: {agent_calls_per_minute: -1, repeat_call_limit: -1}\n")
	// Each replica is ready and says it reads the shared store.
	for i, r := range rs {
		resp, err := http.Get("http://" + r.admin + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), "fleet: postgres store, revocations read") {
			t.Fatalf("replica %d /readyz: %d %q", i+1, resp.StatusCode, body)
		}
	}
	connect := func(r *replica, rt http.RoundTripper) (*mcp.ClientSession, error) {
		return mcp.NewClient(&mcp.Implementation{Name: "fleet"}, nil).Connect(context.Background(),
			&mcp.StreamableClientTransport{Endpoint: "http://" + r.addr + "/mcp", HTTPClient: &http.Client{Transport: rt}, MaxRetries: -1}, nil)
	}
	call := func(s *mcp.ClientSession, query string) (bool, error) {
		res, err := s.CallTool(context.Background(), &mcp.CallToolParams{Name: "demo__search_files", Arguments: map[string]any{"query": query}})
		if err != nil {
			return false, err
		}
		return !res.IsError, nil
	}

	// A task budget of 10, spent concurrently through all three replicas.
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	jkt, err := token.Thumbprint(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	out, stderr, err := portcullis(t, env, "task", "start", "--config", rs[0].cfg, "--agent", "worker", "--tools", "demo__search_files", "--budget", "10", "--jkt", jkt, "--by", "test")
	if err != nil {
		t.Fatalf("task start: %v %s", err, stderr)
	}
	var task struct{ Token string }
	if err := json.Unmarshal([]byte(out), &task); err != nil || task.Token == "" {
		t.Fatalf("task start printed %q", out)
	}
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for i, r := range rs {
		s, err := connect(r, &token.DPoPTransport{Token: task.Token, Key: key})
		if err != nil {
			t.Fatalf("replica %d: %v", i+1, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer s.Close()
			for j := 0; j < 8; j++ {
				if ok, _ := call(s, fmt.Sprintf("budget-%d-%d", i, j)); ok {
					allowed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if n := allowed.Load(); n != 10 {
		t.Fatalf("a task budget of 10 allowed %d calls across the fleet", n)
	}

	// Load on every replica; replica 2 killed in the middle. Its client
	// opens a new session on replica 1 and goes on.
	tok, stderr, err := portcullis(t, env, "token", "issue", "--config", rs[0].cfg, "--agent", "loader", "--ttl", "10m", "--by", "test")
	if err != nil {
		t.Fatalf("token issue: %v %s", err, stderr)
	}
	bearer := token.BearerTransport{Token: strings.TrimSpace(tok)}
	var mu sync.Mutex
	var acked []string
	var afterDeath atomic.Int64 // calls acknowledged to a client after its replica died
	stop := make(chan struct{})
	for i, r := range rs {
		s, err := connect(r, bearer)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			moved := false
			for j := 0; ; j++ {
				select {
				case <-stop:
					s.Close()
					return
				default:
				}
				q := fmt.Sprintf("load-%d-%d", i, j)
				ok, err := call(s, q)
				if err != nil {
					// The replica is gone: reconnect elsewhere.
					s.Close()
					if s, err = connect(rs[0], bearer); err != nil {
						t.Error(err)
						return
					}
					moved = true
					continue
				}
				if ok {
					if moved {
						afterDeath.Add(1)
					}
					mu.Lock()
					acked = append(acked, q)
					mu.Unlock()
				}
			}
		}()
	}
	// The kill comes once the load has run a while, and the load stops once
	// enough calls were acknowledged, some after the kill, to mean
	// something: counted, not timed, so that a loaded machine only makes
	// the test longer (up to a minute each).
	waitAcked := func(n int, what string, more func() bool) {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for {
			mu.Lock()
			got := len(acked)
			mu.Unlock()
			if got >= n && more() {
				return
			}
			if time.Now().After(deadline) {
				close(stop)
				wg.Wait()
				t.Fatalf("%s: only %d calls acknowledged in a minute", what, got)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitAcked(50, "before the kill", func() bool { return true })
	rs[1].cmd.Process.Signal(syscall.SIGKILL)
	rs[1].cmd.Wait()
	waitAcked(100, "after the kill (or the killed replica's client did not go on through another replica)", func() bool { return afterDeath.Load() > 0 })
	close(stop)
	wg.Wait()

	// Every acknowledged call's decision is in the fleet's one log, and
	// the log verifies.
	st, err := store.OpenPostgres(context.Background(), dsn, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	logged := map[string]bool{}
	if err := st.ScanEvents(context.Background(), func(r store.EventRow) error {
		e, err := audit.Decode(r)
		if err == nil && e.Type == audit.TypeDecision && e.Outcome == audit.OutcomeAllow && e.Input != nil {
			var args struct{ Query string }
			json.Unmarshal(e.Input.Arguments, &args)
			logged[args.Query] = true
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, q := range acked {
		if !logged[q] {
			t.Fatalf("acknowledged call %s has no decision in the log", q)
		}
	}
	out, stderr, err = portcullis(t, env, "audit", "verify", "--config", rs[2].cfg, "--key", filepath.Join(rs[0].data, "keys", "audit-log.pub"))
	if err != nil || !strings.Contains(out, "log verified") {
		t.Fatalf("verify the fleet's log after kill -9: %v\n%s%s", err, out, stderr)
	}

	// A call held on replica 3 is released by an approval given through
	// replica 1's configuration (the shared store).
	s3, err := connect(rs[2], bearer)
	if err != nil {
		t.Fatal(err)
	}
	defer s3.Close()
	held := make(chan error, 1)
	go func() {
		res, err := s3.CallTool(context.Background(), &mcp.CallToolParams{Name: "demo__list_files", Arguments: map[string]any{}})
		if err == nil && res.IsError {
			err = fmt.Errorf("held call answered with an error: %+v", res.Content)
		}
		held <- err
	}()
	var id string
	for deadline := time.Now().Add(10 * time.Second); id == "" && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		out, _, _ := portcullis(t, env, "approvals", "list", "--config", rs[0].cfg)
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) > 3 && f[1] == "pending" && f[3] == "demo__list_files" {
				id = f[0]
			}
		}
	}
	if id == "" {
		t.Fatal("the held call's approval request never showed on replica 1")
	}
	if _, stderr, err := portcullis(t, env, "approvals", "approve", id, "--config", rs[0].cfg, "--by", "reviewer"); err != nil {
		t.Fatalf("approve: %v %s", err, stderr)
	}
	select {
	case err := <-held:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("an approval given through replica 1 did not release the call held on replica 3")
	}

	// Revoked through replica 1's store, refused by replica 3 within 1 s.
	if ok, err := call(s3, "before-revocation"); !ok || err != nil {
		t.Fatalf("call before the revocation: %v %v", ok, err)
	}
	if _, stderr, err := portcullis(t, env, "agent", "revoke", "loader", "--config", rs[0].cfg, "--by", "test"); err != nil {
		t.Fatalf("revoke: %v %s", err, stderr)
	}
	revoked := time.Now()
	for {
		ok, err := call(s3, "after-revocation")
		if err != nil || !ok {
			// Refused for its credential (401), nothing else.
			if err == nil || !strings.Contains(err.Error(), "Unauthorized") {
				t.Fatalf("the call after the revocation failed otherwise: %v %v", ok, err)
			}
			break
		}
		if time.Since(revoked) > time.Second {
			t.Fatal("replica 3 still serves an agent revoked more than a second ago")
		}
		time.Sleep(20 * time.Millisecond)
	}
	elapsed := time.Since(revoked)
	// Replica 3 recorded why (the fleet's one log).
	found := false
	for deadline := time.Now().Add(5 * time.Second); !found && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		rows, err := st.Events(context.Background(), store.EventQuery{Types: []string{string(audit.TypeAuthn)}, Last: true, Limit: 20})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			found = found || strings.Contains(string(r.Body), "credential revoked")
		}
	}
	if !found {
		t.Fatal("no authentication refusal for the revoked credential in the log")
	}
	t.Logf("%d calls acknowledged under load (%d to replica 2's client after it died, through replica 1); revocation effective on replica 3 after %v",
		len(acked), afterDeath.Load(), elapsed.Round(time.Millisecond))
}

// TestFleetRateCap: limits.agent_calls_per_minute holds across the fleet:
// two gateways on one store, clients on both calling as fast as they can,
// allow the agent at most its 40 calls in the minute (and at least 40 less
// a lease share per gateway left unspent).
func TestFleetRateCap(t *testing.T) {
	t.Parallel()
	rs, env, dsn := startFleet(t, 2, `permit (principal, action == Action::"call_tool", resource in Upstream::"demo") when { resource.read_only_hint };`,
		"agents: [{name: busy}]\nlimits: {agent_calls_per_minute: 40, repeat_call_limit: -1}\naudit: {export: [{name: siem, file: {path: export.jsonl}}]}\n")
	tok, stderr, err := portcullis(t, env, "token", "issue", "--config", rs[0].cfg, "--agent", "busy", "--ttl", "10m", "--by", "test")
	if err != nil {
		t.Fatalf("token issue: %v %s", err, stderr)
	}
	bearer := token.BearerTransport{Token: strings.TrimSpace(tok)}
	// One minute window: start with at least 15 s of it left.
	if s := time.Now().Second(); s > 45 {
		time.Sleep(time.Duration(61-s) * time.Second)
	}
	var allowed, refused atomic.Int64
	var wg sync.WaitGroup
	for i := range 4 {
		s, err := mcp.NewClient(&mcp.Implementation{Name: "busy"}, nil).Connect(context.Background(),
			&mcp.StreamableClientTransport{Endpoint: "http://" + rs[i%2].addr + "/mcp", HTTPClient: &http.Client{Transport: bearer}, MaxRetries: -1}, nil)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer s.Close()
			for j := 0; j < 20; j++ {
				res, err := s.CallTool(context.Background(), &mcp.CallToolParams{Name: "demo__search_files", Arguments: map[string]any{"query": fmt.Sprint("q", i, j)}})
				switch {
				case err == nil && !res.IsError:
					allowed.Add(1)
				case err != nil && strings.Contains(err.Error(), "rate"):
					refused.Add(1)
				case err != nil:
					t.Errorf("call: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if n := allowed.Load(); n > 40 || n < 40-2*2 {
		t.Fatalf("%d calls allowed of 80 against a fleet-wide cap of 40 a minute (%d refused)", n, refused.Load())
	}
	if refused.Load() == 0 {
		t.Fatal("no call was refused for the rate")
	}

	// Both gateways name the same export file: one exports at a time (a
	// lease in the store), so every event of the fleet's log reaches it
	// once.
	st, err := store.OpenPostgres(context.Background(), dsn, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	logState, err := st.State(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var seen map[int64]int
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		raw, _ := os.ReadFile(filepath.Join(filepath.Dir(rs[0].cfg), "export.jsonl"))
		seen = map[int64]int{}
		for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
			var e struct {
				Metadata struct{ UID int64 } `json:"metadata"`
			}
			if json.Unmarshal([]byte(line), &e) == nil && e.Metadata.UID > 0 {
				seen[e.Metadata.UID]++
			}
		}
		if int64(len(seen)) >= logState.Size {
			break
		}
	}
	for seq := int64(1); seq <= logState.Size; seq++ {
		if seen[seq] != 1 {
			t.Fatalf("event %d exported %d times (log of %d events)", seq, seen[seq], logState.Size)
		}
	}
}

// balancer spreads requests over backends in turn, without session
// affinity; a request a backend cannot take (it is down) goes to the next
// one, as a load balancer with health checks does.
type balancer struct {
	backends []string
	next     atomic.Uint64
	served   []atomic.Int64 // requests each backend answered
}

func (b *balancer) RoundTrip(r *http.Request) (*http.Response, error) {
	var body []byte
	if r.Body != nil {
		body, _ = io.ReadAll(r.Body)
		r.Body.Close()
	}
	start := b.next.Add(1)
	var err error
	for i := range b.backends {
		k := int((start + uint64(i)) % uint64(len(b.backends)))
		req := r.Clone(r.Context())
		req.URL.Host, req.Host = b.backends[k], b.backends[k]
		req.Body, req.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
		var resp *http.Response
		if resp, err = http.DefaultTransport.RoundTrip(req); err == nil {
			b.served[k].Add(1)
			return resp, nil
		}
	}
	return nil, err
}

// withBearer sends the agent's token through next.
type withBearer struct {
	token string
	next  http.RoundTripper
}

func (b withBearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.next.RoundTrip(r)
}

// TestFleetSessions: one client session served by two gateways behind a
// balancer without session affinity (every request may go to either):
// the session's data-flow labels, acquired on one gateway, decide its next
// request on the other; a containment written to the store holds the
// session back on both; one gateway killed (SIGKILL), the same session
// goes on through the other, labels and all, with no new initialize.
func TestFleetSessions(t *testing.T) {
	t.Parallel()
	rs, env, dsn := startFleet(t, 2, `permit (principal, action == Action::"call_tool", resource in Upstream::"demo");
@id("untrusted-then-send")
forbid (principal, action == Action::"call_tool", resource)
when { resource.classification.contains("sends_externally") && context.session.labels.contains("untrusted_input") };`,
		`agents: [{name: roamer}]
limits: {agent_calls_per_minute: -1, repeat_call_limit: -1}
tools:
  - {name: demo__read_file, labels: [untrusted_input]}
  - {name: demo__send_message, classification: [sends_externally], labels: []}
`)
	tok, stderr, err := portcullis(t, env, "token", "issue", "--config", rs[0].cfg, "--agent", "roamer", "--ttl", "10m", "--by", "test")
	if err != nil {
		t.Fatalf("token issue: %v %s", err, stderr)
	}
	lb := &balancer{backends: []string{rs[0].addr, rs[1].addr}, served: make([]atomic.Int64, 2)}
	bearer := withBearer{token: strings.TrimSpace(tok), next: lb}
	connect := func() *mcp.ClientSession {
		t.Helper()
		// Default retries: the client's stream for messages outside requests
		// reconnects (through the balancer) when its gateway dies.
		s, err := mcp.NewClient(&mcp.Implementation{Name: "roamer"}, nil).Connect(context.Background(),
			&mcp.StreamableClientTransport{Endpoint: "http://balancer/mcp", HTTPClient: &http.Client{Transport: bearer}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	call := func(s *mcp.ClientSession, name string, args map[string]any) error {
		res, err := s.CallTool(context.Background(), &mcp.CallToolParams{Name: name, Arguments: args})
		if err == nil && res.IsError {
			err = fmt.Errorf("%s: tool error %+v", name, res.Content)
		}
		return err
	}
	send := map[string]any{"to": "carol@example.com", "body": "hi"}
	refusedFor := func(err error, code string) bool {
		return err != nil && strings.Contains(err.Error(), code)
	}

	s := connect()
	if err := call(s, "demo__send_message", send); err != nil {
		t.Fatalf("send in a clean session: %v", err)
	}
	if err := call(s, "demo__read_file", map[string]any{"path": "notes/meeting.txt"}); err != nil {
		t.Fatal(err)
	}
	// Whichever gateway serves them, the sends after are refused.
	for i := range 6 {
		if err := call(s, "demo__send_message", send); !refusedFor(err, "forbidden_by_policy") {
			t.Fatalf("send %d after untrusted input: %v", i, err)
		}
	}
	if a, b := lb.served[0].Load(), lb.served[1].Load(); a < 3 || b < 3 {
		t.Fatalf("the balancer did not spread the session: %d and %d requests", a, b)
	}

	// A containment written to the store (by any gateway's response to an
	// alert) holds the session back on both gateways within a second.
	other := connect()
	if err := call(other, "demo__search_files", map[string]any{"query": "x"}); err != nil {
		t.Fatal(err)
	}
	st, err := store.OpenPostgres(context.Background(), dsn, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Contain(context.Background(), store.Containment{Session: other.ID(), Agent: "roamer", Level: int(mcpproxy.Terminated), At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	contained := time.Now()
	for {
		err := call(other, "demo__search_files", map[string]any{"query": "y"})
		if refusedFor(err, "contained") {
			break
		}
		if time.Since(contained) > time.Second {
			t.Fatalf("the session is still served a second after its containment: %v", err)
		}
	}
	t.Logf("containment effective after %v", time.Since(contained).Round(time.Millisecond))
	time.Sleep(time.Until(contained.Add(time.Second)))
	for i := range 4 { // both gateways, in turn
		if err := call(other, "demo__search_files", map[string]any{"query": "z"}); !refusedFor(err, "contained") {
			t.Fatalf("call %d a second after the containment: %v", i, err)
		}
	}

	// Gateway 2 dies; the session goes on through gateway 1, still labelled.
	rs[1].cmd.Process.Signal(syscall.SIGKILL)
	rs[1].cmd.Wait()
	before := lb.served[0].Load()
	for i := range 10 {
		if err := call(s, "demo__search_files", map[string]any{"query": fmt.Sprint("after-", i)}); err != nil {
			t.Fatalf("call %d after gateway 2 died: %v", i, err)
		}
	}
	if err := call(s, "demo__send_message", send); !refusedFor(err, "forbidden_by_policy") {
		t.Fatalf("send after gateway 2 died: %v", err)
	}
	if lb.served[0].Load()-before < 11 {
		t.Fatal("the calls after the death did not go to gateway 1")
	}

	// The log says which gateway took the session up, with its labels.
	found := false
	for deadline := time.Now().Add(5 * time.Second); !found && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		rows, err := st.Events(context.Background(), store.EventQuery{SessionID: s.ID(), Types: []string{string(audit.TypeSessionLabel)}})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			found = found || strings.Contains(string(r.Body), `"session_taken_up"`)
		}
	}
	if !found {
		t.Fatal("no session_taken_up event for the session in the fleet's log")
	}
}
