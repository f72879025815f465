package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/demo"
	"github.com/portcullis-dev/portcullis/internal/mcpproxy"
	"github.com/portcullis-dev/portcullis/internal/reason"
	"github.com/portcullis-dev/portcullis/internal/token"
)

const demoConfig = `
version: 1
data_dir: DIR/data
policy:
  paths: [DIR/policy.cedar]
agents:
  - name: reader
    roles: [readers]
  - name: mailer
    roles: [readers, mailers]
  - name: nobody
upstreams:
  - name: demo
    builtin: demo
`

const demoPolicy = `
@id("readers-read")
permit (principal in Role::"readers", action == Action::"call_tool", resource in Upstream::"demo")
when { resource.read_only_hint };

@id("readers-resources")
permit (principal in Role::"readers", action == Action::"read_resource", resource in Upstream::"demo");

@id("mailers-send")
permit (principal in Role::"mailers", action == Action::"call_tool", resource == Tool::"demo__send_message");

@id("mail-domain")
@reason("recipient outside example.com")
forbid (principal, action == Action::"call_tool", resource == Tool::"demo__send_message")
unless { context.arguments has to && context.arguments.to like "*@example.com" };
`

func startDemo(t *testing.T) *harness {
	return startGateway(t, demoConfig, map[string]string{"policy.cedar": demoPolicy})
}

func TestToolsListIsFilteredByPolicy(t *testing.T) {
	t.Parallel()
	h := startDemo(t)
	for _, tc := range []struct {
		agent string
		want  []string
	}{
		{"reader", []string{"demo__list_files", "demo__read_file", "demo__search_files"}},
		{"mailer", []string{"demo__list_files", "demo__read_file", "demo__search_files", "demo__send_message"}},
		{"nobody", nil},
	} {
		got := toolNames(t, h.mustConnect(tc.agent))
		slices.Sort(got)
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%s sees tools (-want +got):\n%s", tc.agent, diff)
		}
	}
	e := h.findEvent(func(e *audit.Event) bool { return e.Method == "tools/list" && e.Agent == "nobody" })
	if e == nil || e.Detail != "0 of 4 visible" || e.PolicyVersion == "" {
		t.Errorf("tools/list event = %+v", e)
	}
}

func TestAllowedCallReturnsExactlyWhatTheUpstreamReturned(t *testing.T) {
	t.Parallel()
	h := startDemo(t)
	s := h.mustConnect("reader")
	args := map[string]any{"path": "notes/meeting.txt"}
	got, err := s.CallTool(context.Background(), &mcp.CallToolParams{Name: "demo__read_file", Arguments: args})
	if err != nil {
		t.Fatal(err)
	}

	// The same call straight to the demo server, without the gateway.
	d, err := demo.New(filepath.Join(h.g.dataDir, DemoDir))
	if err != nil {
		t.Fatal(err)
	}
	ct, st := mcp.NewInMemoryTransports()
	ctx := context.Background()
	if _, err := d.MCPServer().Connect(ctx, st, nil); err != nil {
		t.Fatal(err)
	}
	// At the protocol version the gateway's session agreed with the agent.
	direct, err := mcp.NewClient(&mcp.Implementation{Name: "direct"}, nil).Connect(ctx, ct, &mcp.ClientSessionOptions{ProtocolVersion: s.InitializeResult().ProtocolVersion})
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	want, err := direct.CallTool(ctx, &mcp.CallToolParams{Name: "read_file", Arguments: args})
	if err != nil {
		t.Fatal(err)
	}
	gb, _ := json.Marshal(got)
	wb, _ := json.Marshal(want)
	if string(gb) != string(wb) {
		t.Errorf("through gateway:\n%s\ndirect:\n%s", gb, wb)
	}
	e := h.findEvent(func(e *audit.Event) bool { return e.Target == "demo__read_file" })
	if e == nil || e.Outcome != audit.OutcomeAllow || e.Agent != "reader" || e.SessionID != s.ID() ||
		!slices.Contains(e.Policies, "readers-read") || e.ArgumentsSHA256 == "" || e.RequestID == "" {
		t.Errorf("decision event = %+v", e)
	}
}

func TestDeniedCallHasNoEffectUpstream(t *testing.T) {
	t.Parallel()
	h := startDemo(t)
	outbox := filepath.Join(h.g.dataDir, DemoDir, "outbox.jsonl")
	ctx := context.Background()

	// A reader may not send at all; the tool is hidden and a call is denied.
	_, err := h.mustConnect("reader").CallTool(ctx, &mcp.CallToolParams{Name: "demo__send_message", Arguments: map[string]any{"to": "a@example.com", "body": "hi"}})
	assertDenied(t, err, "no_permit")

	// A mailer may send only inside example.com.
	m := h.mustConnect("mailer")
	_, err = m.CallTool(ctx, &mcp.CallToolParams{Name: "demo__send_message", Arguments: map[string]any{"to": "eve@evil.test", "body": "secrets"}})
	assertDenied(t, err, "forbidden_by_policy")
	if _, err := os.Stat(outbox); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("denied sends reached the upstream: outbox exists (%v)", err)
	}
	res, err := m.CallTool(ctx, &mcp.CallToolParams{Name: "demo__send_message", Arguments: map[string]any{"to": "bob@example.com", "body": "hello"}})
	if err != nil || res.IsError {
		t.Fatalf("allowed send: %v %+v", err, res)
	}
	b, err := os.ReadFile(outbox)
	if err != nil || strings.Count(string(b), "\n") != 1 || !strings.Contains(string(b), "bob@example.com") {
		t.Fatalf("outbox = %q, %v; want exactly the allowed message", b, err)
	}
	e := h.findEvent(func(e *audit.Event) bool { return e.Code == "forbidden_by_policy" })
	if e == nil || e.Agent != "mailer" || !slices.Contains(e.Policies, "mail-domain") ||
		!slices.Contains(e.Reasons, "recipient outside example.com") || e.Outcome != audit.OutcomeDeny {
		t.Errorf("denial event = %+v", e)
	}
}

func assertDenied(t testing.TB, err error, want reason.Code) {
	t.Helper()
	var we *jsonrpc.Error
	if !errors.As(err, &we) {
		t.Fatalf("err = %v, want a JSON-RPC denial", err)
	}
	if we.Code != mcpproxy.CodeDenied {
		t.Fatalf("code = %d, want %d (%v)", we.Code, mcpproxy.CodeDenied, err)
	}
	var data map[string]string
	if err := json.Unmarshal(we.Data, &data); err != nil {
		t.Fatalf("denial data %q: %v", we.Data, err)
	}
	if data["reason"] != string(want) || data["request_id"] == "" {
		t.Fatalf("denial data = %v, want reason %q and a request ID", data, want)
	}
	if strings.Contains(we.Message, "@id") || strings.Contains(string(we.Data), "mail-domain") {
		t.Fatalf("denial leaks policy internals: %v", err)
	}
}

func TestUnauthenticatedAndBadCredentialsAreRefused(t *testing.T) {
	t.Parallel()
	h := startDemo(t)
	init := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}`
	good := h.token("reader", time.Minute)
	parts := strings.Split(good, ".")
	tampered := parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2]))

	// A token signed by another key (another gateway's data directory).
	other := startDemo(t)
	foreign := other.token("reader", time.Minute)

	for name, tok := range map[string]string{
		"none": "", "garbage": "not-a-token", "tampered": tampered, "foreign": foreign,
	} {
		resp, body := h.post(tok, init, nil)
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "unauthenticated") {
			t.Errorf("%s: status %d body %q, want 401", name, resp.StatusCode, body)
		}
	}
	if _, err := h.connect(""); err == nil {
		t.Error("Go SDK client connected without a token")
	}
	if e := h.findEvent(func(e *audit.Event) bool { return e.Type == audit.TypeAuthn }); e == nil || e.Outcome != audit.OutcomeDeny || e.RemoteAddr == "" {
		t.Errorf("authn refusal event = %+v", e)
	}
}

// expiredToken mints a token for reader that expired an hour ago, with the
// gateway's own key.
func expiredToken(t *testing.T, h *harness) string {
	t.Helper()
	past := func() time.Time { return time.Now().Add(-time.Hour) }
	iss, err := token.NewIssuer(h.g.key, h.cfg.Auth.Issuer, h.cfg.Auth.Audience, time.Hour, past)
	if err != nil {
		t.Fatal(err)
	}
	raw, _, err := iss.Issue("reader", 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func TestExpiredTokenIsRefusedMidSession(t *testing.T) {
	t.Parallel()
	h := startDemo(t)
	s, err := h.connect(h.token("reader", time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.ListTools(context.Background(), nil); err != nil {
		t.Fatalf("fresh token: %v", err)
	}
	resp, _ := h.post(expiredToken(t, h), `{"jsonrpc":"2.0","id":1,"method":"ping"}`, map[string]string{"Mcp-Session-Id": s.ID()})
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("expired token: status %d, want 401", resp.StatusCode)
	}
}

func TestSessionCannotBeUsedByAnotherAgent(t *testing.T) {
	t.Parallel()
	h := startDemo(t)
	s := h.mustConnect("mailer")
	// The reader presents the mailer's session ID with its own valid token.
	resp, body := h.post(h.token("reader", time.Minute), `{"jsonrpc":"2.0","id":7,"method":"tools/list"}`,
		map[string]string{"Mcp-Session-Id": s.ID(), "Mcp-Protocol-Version": "2025-06-18"})
	if resp.StatusCode == http.StatusOK && strings.Contains(body, "demo__send_message") {
		t.Fatalf("hijacked session listed the mailer's tools: %s", body)
	}
}

func TestUnknownMethodsAndMalformedMessagesAreRefused(t *testing.T) {
	t.Parallel()
	h := startDemo(t)
	tok := h.token("reader", time.Minute)
	deep := strings.Repeat("[", 100) + strings.Repeat("]", 100)
	big := `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":"` + strings.Repeat("a", 5<<20) + `"}}`
	batch := "[" + strings.TrimSuffix(strings.Repeat(`{"jsonrpc":"2.0","id":1,"method":"ping"},`, 20), ",") + "]"
	for name, tc := range map[string]struct {
		body   string
		status int
		reason string
	}{
		"unknown method":            {`{"jsonrpc":"2.0","id":3,"method":"admin/shutdown"}`, http.StatusOK, "method_not_allowed"},
		"sampling from agent":       {`{"jsonrpc":"2.0","id":3,"method":"sampling/createMessage","params":{}}`, http.StatusOK, "method_not_allowed"},
		"not json":                  {`{"jsonrpc":`, http.StatusBadRequest, "malformed"},
		"wrong version":             {`{"jsonrpc":"1.0","id":1,"method":"ping"}`, http.StatusBadRequest, "malformed"},
		"too deep":                  {deep, http.StatusBadRequest, "message_too_deep"},
		"too large":                 {big, http.StatusRequestEntityTooLarge, "message_too_large"},
		"batch too big":             {batch, http.StatusBadRequest, "batch_too_large"},
		"neither method nor result": {`{"jsonrpc":"2.0","id":4}`, http.StatusBadRequest, "malformed"},
		"duplicate keys":            {`{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"demo__read_file","name":"demo__send_message"}}`, http.StatusBadRequest, "malformed"},
		"call before initialize":    {`{"jsonrpc":"2.0","id":6,"method":"tools/list"}`, http.StatusBadRequest, "initialize first"},
	} {
		resp, body := h.post(tok, tc.body, nil)
		if resp.StatusCode != tc.status || !strings.Contains(body, tc.reason) {
			t.Errorf("%s: status %d body %.200q; want %d with %q", name, resp.StatusCode, body, tc.status, tc.reason)
		}
	}
	if e := h.findEvent(func(e *audit.Event) bool { return e.Type == audit.TypeProtocol && e.Method == "admin/shutdown" }); e == nil || e.Agent != "reader" {
		t.Errorf("protocol refusal event = %+v", e)
	}
}

func TestOversizeArgumentsAreRefusedBeforePolicy(t *testing.T) {
	t.Parallel()
	h := startDemo(t)
	s := h.mustConnect("reader")
	_, err := s.CallTool(context.Background(), &mcp.CallToolParams{Name: "demo__search_files", Arguments: map[string]any{"query": strings.Repeat("x", 300<<10)}})
	assertDenied(t, err, reason.ArgumentsTooLarge)
	_, err = s.CallTool(context.Background(), &mcp.CallToolParams{Name: "demo__no_such_tool", Arguments: map[string]any{}})
	assertDenied(t, err, reason.UnknownTarget)
}

func TestResourcesAreDecidedAndRelayed(t *testing.T) {
	t.Parallel()
	h := startDemo(t)
	ctx := context.Background()
	res, err := h.mustConnect("reader").ReadResource(ctx, &mcp.ReadResourceParams{URI: "demo:///notes/todo.txt"})
	if err != nil || len(res.Contents) != 1 || !strings.Contains(res.Contents[0].Text, "threat model") {
		t.Fatalf("read resource: %v %+v", err, res)
	}
	_, err = h.mustConnect("nobody").ReadResource(ctx, &mcp.ReadResourceParams{URI: "demo:///notes/todo.txt"})
	assertDenied(t, err, "no_permit")
	_, err = h.mustConnect("reader").ReadResource(ctx, &mcp.ReadResourceParams{URI: "file:///etc/passwd"})
	assertDenied(t, err, reason.UnknownTarget)
}

func TestEveryDecisionCarriesAttribution(t *testing.T) {
	t.Parallel()
	h := startDemo(t)
	s := h.mustConnect("mailer")
	s.CallTool(context.Background(), &mcp.CallToolParams{Name: "demo__list_files", Arguments: map[string]any{}})
	s.CallTool(context.Background(), &mcp.CallToolParams{Name: "demo__send_message", Arguments: map[string]any{"to": "x@evil.test", "body": "b"}})
	var decisions int
	for _, e := range h.events() {
		if e.Type != audit.TypeDecision || e.Action != "call_tool" {
			continue
		}
		decisions++
		if e.Agent != "mailer" || e.Credential == "" || e.SessionID == "" || e.RequestID == "" ||
			e.PolicyVersion != h.g.engine.Version() || e.Target == "" || e.Method != "tools/call" {
			t.Errorf("event lacks attribution: %+v", e)
		}
	}
	if decisions != 2 {
		t.Errorf("%d call decisions recorded, want 2", decisions)
	}
}

func TestAdminEndpoints(t *testing.T) {
	t.Parallel()
	h := startDemo(t)
	h.mustConnect("reader").CallTool(context.Background(), &mcp.CallToolParams{Name: "demo__list_files", Arguments: map[string]any{}})
	get := h.adminGet
	if code, body := get("/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("healthz %d %q", code, body)
	}
	if code, body := get("/readyz"); code != 200 || body != "ready\nupstream demo: ready\n" {
		t.Errorf("readyz %d %q", code, body)
	}
	code, body := get("/metrics")
	for _, want := range []string{`portcullis_decisions_total{action="call_tool",outcome="allow"} 1`, `portcullis_upstream_up{upstream="demo"} 1`, "portcullis_decision_seconds_bucket", "process_resident_memory_bytes"} {
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	// The posture, computed in the background from the start.
	for i := 0; i < 100; i++ {
		if _, body = get("/metrics"); strings.Contains(body, `portcullis_posture_tier{capability="action_logging"}`) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, want := range []string{`portcullis_posture_tier{capability="permission_models"}`, `portcullis_outcome{metric="decisions"}`} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	// The agent listener serves MCP and the JWKS, nothing else.
	resp, err := http.Get("http://" + h.g.AgentAddr() + "/metrics")
	if err != nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("agent listener serves /metrics: %v %v", err, resp.StatusCode)
	}
	resp, err = http.Get("http://" + h.g.AgentAddr() + "/.well-known/jwks.json")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("jwks: %v", err)
	}
	var jwks struct{ Keys []map[string]any }
	json.NewDecoder(resp.Body).Decode(&jwks)
	if len(jwks.Keys) != 1 || jwks.Keys[0]["kid"] != h.g.key.KeyID() || jwks.Keys[0]["d"] != nil {
		t.Errorf("jwks = %v", jwks)
	}
}

func TestArgumentsAreValidatedAgainstTheToolSchema(t *testing.T) {
	t.Parallel()
	h := startDemo(t)
	s := h.mustConnect("mailer")
	ctx := context.Background()
	for name, tc := range map[string]struct {
		args map[string]any
		want string
	}{
		"wrong type":       {map[string]any{"to": "bob@example.com", "body": 42}, `argument "body": has type integer`},
		"unknown property": {map[string]any{"to": "bob@example.com", "body": "hi", "bcc": "eve@evil.test"}, `declares no arguments ["bcc"]`},
		"missing required": {map[string]any{"body": "hi"}, `missing required properties ["to"]`},
	} {
		// Answered as the server would: a tool error the model can act on,
		// naming the argument and the constraint, never the value.
		res, err := s.CallTool(ctx, &mcp.CallToolParams{Name: "demo__send_message", Arguments: tc.args})
		if err != nil || !res.IsError || !strings.Contains(text(res), tc.want) || strings.Contains(text(res), "eve@evil.test") {
			t.Errorf("%s: %v %+v; want an isError result saying %q", name, err, res, tc.want)
		}
	}
	if _, err := os.Stat(filepath.Join(h.g.dataDir, DemoDir, "outbox.jsonl")); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("a call with invalid arguments reached the upstream")
	}
	e := h.findEvent(func(e *audit.Event) bool { return strings.Contains(e.Detail, "declares no arguments") })
	if e == nil || e.Code != reason.BadArguments || e.Outcome != audit.OutcomeDeny || !strings.Contains(e.Detail, "bcc") || strings.Contains(e.Detail, "eve@evil.test") {
		t.Errorf("schema refusal event = %+v", e)
	}
}

// TestUpstreamsThatCollideStopServe: two upstreams served without a
// prefix that offer the same tool names make serve refuse to start,
// naming both; which one an agent reaches must never be a guess.
func TestUpstreamsThatCollideStopServe(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "portcullis.yaml")
	os.WriteFile(path, []byte(strings.ReplaceAll(`version: 1
data_dir: DIR/data
listen: {address: "127.0.0.1:0", admin: "127.0.0.1:0"}
agents: [{name: a}]
upstreams:
  - {name: one, builtin: demo, namespace: none}
  - {name: two, builtin: demo, namespace: none}
`, "DIR", dir)), 0o600)
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	g, err := New(cfg, Options{Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err = g.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "collide") || !strings.Contains(err.Error(), "one and two") || !strings.Contains(err.Error(), "read_file") {
		t.Fatalf("serve with colliding upstreams: %v", err)
	}
}

// TestExpiredTokenInsideLeewayIsRefusedAndAudited: a token past its expiry
// but inside the verifier's clock-skew leeway is refused by Portcullis
// itself: 401 with a challenge, and an authn event.
func TestExpiredTokenInsideLeewayIsRefusedAndAudited(t *testing.T) {
	t.Parallel()
	h := startGateway(t, demoConfig, map[string]string{"policy.cedar": demoPolicy})
	raw := h.token("reader", time.Second)
	time.Sleep(1100 * time.Millisecond) // expired, well inside token.Leeway
	resp, body := h.post(raw, `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}`, nil)
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(resp.Header.Get("WWW-Authenticate"), "invalid_token") || !strings.Contains(body, `"request_id"`) {
		t.Fatalf("expired token: %d %q %s", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), body)
	}
	e := h.findEvent(func(e *audit.Event) bool { return e.Type == audit.TypeAuthn && strings.Contains(e.Detail, "expired") })
	if e == nil || e.Code != reason.Unauthenticated {
		t.Errorf("no authn event for the expired token: %+v", e)
	}
}

// TestChallengesPointAtTheResourceMetadata: the 401 challenge always names
// the protected resource metadata (RFC 9728), carries error= only when a
// credential was presented (RFC 6750 §3.1) and is a DPoP challenge for a
// DPoP credential (RFC 9449 §7.1); the metadata names the resource.
func TestChallengesPointAtTheResourceMetadata(t *testing.T) {
	t.Parallel()
	h := startGateway(t, demoConfig, map[string]string{"policy.cedar": demoPolicy})
	init := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}`
	meta := strings.TrimSuffix(h.url, "/mcp") + "/.well-known/oauth-protected-resource/mcp"
	for _, tc := range []struct {
		name, auth, prefix string
		errorParam         bool
	}{
		{"no credential", "", "Bearer ", false},
		{"a bad bearer token", "Bearer nope", "Bearer ", true},
		{"a bad DPoP token", "DPoP nope", "DPoP ", true},
	} {
		req, _ := http.NewRequest("POST", h.url, strings.NewReader(init))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		ch := resp.Header.Get("WWW-Authenticate")
		if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(ch, tc.prefix) || !strings.Contains(ch, `resource_metadata="`+meta+`"`) ||
			strings.Contains(ch, "error=") != tc.errorParam {
			t.Errorf("%s: %d %q", tc.name, resp.StatusCode, ch)
		}
		if tc.prefix == "DPoP " && !strings.Contains(ch, `algs="ES256 EdDSA"`) {
			t.Errorf("%s: no algorithms in %q", tc.name, ch)
		}
	}
	resp, err := http.Get(meta)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m struct {
		Resource string   `json:"resource"`
		Bearer   []string `json:"bearer_methods_supported"`
		DPoP     []string `json:"dpop_signing_alg_values_supported"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil || resp.StatusCode != 200 || m.Resource != h.url || len(m.DPoP) == 0 || len(m.Bearer) != 1 {
		t.Errorf("metadata %d %+v %v", resp.StatusCode, m, err)
	}
	// The document without the path suffix describes the origin.
	root, err := http.Get(strings.TrimSuffix(meta, "/mcp"))
	if err != nil {
		t.Fatal(err)
	}
	defer root.Body.Close()
	var rm struct{ Resource string }
	if err := json.NewDecoder(root.Body).Decode(&rm); err != nil || rm.Resource != strings.TrimSuffix(h.url, "/mcp") {
		t.Errorf("origin metadata %+v %v", rm, err)
	}
}
