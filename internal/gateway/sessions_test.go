package gateway

import (
	"context"
	"database/sql"
	"log/slog"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/mcpproxy"
	"github.com/portcullis-dev/portcullis/internal/ops"
	"github.com/portcullis-dev/portcullis/internal/reason"
)

// sessionPolicy: mailers may call anything of demo, but no external send
// once the session has read untrusted content.
const sessionPolicy = `
@id("mailers-demo")
permit (principal in Role::"mailers", action == Action::"call_tool", resource);

@id("untrusted-then-send")
@reason("the session read untrusted content")
forbid (principal, action == Action::"call_tool", resource)
when { resource.classification.contains("sends_externally") && context.session.labels.contains("untrusted_input") };
`

const sessionConfig = `
version: 1
data_dir: DIR/data
policy:
  paths: [DIR/policy.cedar]
agents:
  - name: mailer
    roles: [mailers]
  - name: other
    roles: [mailers]
upstreams:
  - name: demo
    builtin: demo
tools:
  - name: demo__read_file
    labels: [untrusted_input]
  - name: demo__send_message
    classification: [sends_externally]
    labels: []
`

// restart stops h's gateway and starts another on the same configuration
// and data directory (a new port).
func (h *harness) restart() *harness {
	h.t.Helper()
	h.stop()
	g, err := New(h.cfg, Options{Log: slog.New(slog.NewTextHandler(testWriter{h.t}, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		h.t.Fatal(err)
	}
	if err := g.Listen(); err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	next := &harness{t: h.t, g: g, cfg: h.cfg, dir: h.dir, url: "http://" + g.AgentAddr() + "/mcp"}
	stopped := false
	next.stop = func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
	}
	h.t.Cleanup(next.stop)
	if err := g.proxy.WaitReady(ctx); err != nil {
		h.t.Fatal(err)
	}
	return next
}

// follow sends requests to whichever gateway *to names: one client
// session across gateways, as behind a load balancer.
type follow struct {
	to    *atomic.Pointer[string]
	token string
}

func (f follow) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.URL.Host = strings.TrimSuffix(strings.TrimPrefix(*f.to.Load(), "http://"), "/mcp")
	r.Host = r.URL.Host
	r.Header.Set("Authorization", "Bearer "+f.token)
	return http.DefaultTransport.RoundTrip(r)
}

// A session outlives its gateway: after a restart the agent's next
// request (with the same Mcp-Session-Id, no new initialize) is served,
// decided with the labels the session acquired before; another agent
// cannot take it up; an ended session is not taken up; a contained
// session stays contained.
func TestSessionOutlivesRestart(t *testing.T) {
	t.Parallel()
	h := startGateway(t, sessionConfig, map[string]string{"policy.cedar": sessionPolicy})
	ctx := context.Background()
	var to atomic.Pointer[string]
	to.Store(&h.url)
	connect := func(agent string) *mcp.ClientSession {
		t.Helper()
		client := mcp.NewClient(&mcp.Implementation{Name: "e2e", Version: "1"}, nil)
		s, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: h.url,
			HTTPClient: &http.Client{Transport: follow{to: &to, token: h.token(agent, 10*time.Minute)}}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	call := func(s *mcp.ClientSession, name string, args map[string]any) error {
		t.Helper()
		res, err := s.CallTool(ctx, &mcp.CallToolParams{Name: name, Arguments: args})
		if err == nil && res.IsError {
			t.Fatalf("%s: tool error %v", name, res.Content)
		}
		return err
	}
	send := map[string]any{"to": "carol@example.com", "body": "hi"}

	labelled, clean, contained, ended := connect("mailer"), connect("mailer"), connect("mailer"), connect("mailer")
	if err := call(labelled, "demo__send_message", send); err != nil {
		t.Fatalf("send before untrusted input: %v", err)
	}
	if err := call(labelled, "demo__read_file", map[string]any{"path": "notes/meeting.txt"}); err != nil {
		t.Fatal(err)
	}
	assertDenied(t, call(labelled, "demo__send_message", send), reason.Forbidden)
	h.g.contain(contained.ID(), "mailer", mcpproxy.Terminated) // as the response to an alert does
	endedID := ended.ID()
	if err := ended.Close(); err != nil { // DELETE: the agent ends it
		t.Fatal(err)
	}

	h2 := h.restart()
	to.Store(&h2.url)

	// The labelled session goes on, still labelled: the send is refused.
	assertDenied(t, call(labelled, "demo__send_message", send), reason.Forbidden)
	if err := call(labelled, "demo__list_files", map[string]any{}); err != nil {
		t.Fatalf("a call in the session taken up: %v", err)
	}
	// The clean one sends as before.
	if err := call(clean, "demo__send_message", send); err != nil {
		t.Fatalf("send in a clean session taken up: %v", err)
	}
	// The contained one is still held back.
	assertDenied(t, call(contained, "demo__list_files", map[string]any{}), reason.Contained)

	// Another agent presenting the session's ID is refused, and audited.
	init := `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`
	resp, body := h2.post(h2.token("other", time.Minute), init, map[string]string{"Mcp-Session-Id": labelled.ID(), "Mcp-Protocol-Version": "2025-06-18"})
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, string(reason.SessionHijack)) {
		t.Fatalf("another agent's take-up: %d %s", resp.StatusCode, body)
	}
	// The ended session and an unknown one are not found.
	for _, id := range []string{endedID, "0123456789abcdef0123456789abcdef", "not-a-session"} {
		resp, body = h2.post(h2.token("mailer", time.Minute), init, map[string]string{"Mcp-Session-Id": id, "Mcp-Protocol-Version": "2025-06-18"})
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("session %s: %d %s", id, resp.StatusCode, body)
		}
	}

	// Each take-up is audited with the labels the session came with.
	e := h2.findEvent(func(e *audit.Event) bool {
		return e.Code == reason.SessionTakenUp && e.SessionID == labelled.ID()
	})
	if e == nil || e.Agent != "mailer" || !slices.Equal(e.Labels, []string{mcpproxy.LabelUntrustedInput}) {
		t.Fatalf("take-up event: %+v", e)
	}
	if e := h2.findEvent(func(e *audit.Event) bool {
		return e.Code == reason.SessionHijack && e.SessionID == labelled.ID()
	}); e == nil || e.Agent != "other" {
		t.Fatalf("hijack event: %+v", e)
	}
}

// A containment the store cannot take holds in this gateway at once, is
// retried until the store takes it, and takes the gateway out of rotation
// (/readyz) meanwhile: a session held back here must not get away through
// another gateway or a restart.
func TestContainmentRetriedUntilStored(t *testing.T) {
	t.Parallel()
	h := startGateway(t, sessionConfig, map[string]string{"policy.cedar": sessionPolicy})
	db, err := sql.Open("sqlite", "file:"+filepath.Join(h.g.dataDir, ops.StoreFile)+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// The store refuses containments (its table gone).
	if _, err := db.Exec(`ALTER TABLE containments RENAME TO containments_away`); err != nil {
		t.Fatal(err)
	}
	h.g.contain("0123456789abcdef0123456789abcdef", "mailer", mcpproxy.ReadOnly)
	if got := h.g.proxy.Containment("0123456789abcdef0123456789abcdef", "mailer"); got != mcpproxy.ReadOnly {
		t.Fatalf("not held at once: %v", got)
	}
	if code, body := h.adminGet("/readyz"); code == http.StatusOK || !strings.Contains(body, "containments: 1 not written") {
		t.Fatalf("/readyz with a containment unwritten: %d %s", code, body)
	}
	if _, err := db.Exec(`ALTER TABLE containments_away RENAME TO containments`); err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		cs, err := h.g.store.Containments(context.Background())
		if err == nil && len(cs) == 1 && cs[0].Level == int(mcpproxy.ReadOnly) {
			break
		}
		if i == 300 {
			t.Fatalf("the containment was never written: %+v %v", cs, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for i := 0; ; i++ {
		if code, _ := h.adminGet("/readyz"); code == http.StatusOK {
			break
		}
		if i == 100 {
			code, body := h.adminGet("/readyz")
			t.Fatalf("/readyz after the write: %d %s", code, body)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
