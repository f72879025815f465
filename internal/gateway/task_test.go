package gateway

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/authn"
	"github.com/portcullis-dev/portcullis/internal/reason"
	"github.com/portcullis-dev/portcullis/internal/store"
	"github.com/portcullis-dev/portcullis/internal/token"
)

func TestTaskScopedSenderConstrainedTokens(t *testing.T) {
	t.Parallel()
	h := startDemo(t)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	jkt, err := token.Thumbprint(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	raw, task, err := cli(t, h.cfg).StartTask(ctx, token.Task{Agent: "mailer", User: "alice", Purpose: "summarise notes",
		Tools: []string{"demo__read_file", "demo__list_files"}, Budget: 3, JKT: jkt}, "", 5*time.Minute, "test")
	if err != nil {
		t.Fatal(err)
	}
	client := mcp.NewClient(&mcp.Implementation{Name: "task-agent"}, nil)
	s, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: h.url, HTTPClient: &http.Client{Transport: &token.DPoPTransport{Token: raw, Key: key}}, MaxRetries: -1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// Least agency: the mailer's role could send and search; the task sees its two tools.
	got := toolNames(t, s)
	slices.Sort(got)
	if !slices.Equal(got, []string{"demo__list_files", "demo__read_file"}) {
		t.Fatalf("task sees %v", got)
	}
	_, err = s.CallTool(ctx, &mcp.CallToolParams{Name: "demo__search_files", Arguments: map[string]any{"query": "x"}})
	assertDenied(t, err, reason.OutsideTask)
	for i := 0; i < 3; i++ {
		if _, err := s.CallTool(ctx, &mcp.CallToolParams{Name: "demo__list_files", Arguments: map[string]any{}}); err != nil {
			t.Fatalf("call %d within budget: %v", i, err)
		}
	}
	_, err = s.CallTool(ctx, &mcp.CallToolParams{Name: "demo__list_files", Arguments: map[string]any{}})
	assertDenied(t, err, reason.TaskExhausted)
	e := h.findEvent(func(e *audit.Event) bool {
		return e.Task == task.ID && e.Outcome == audit.OutcomeAllow && e.Action == "call_tool"
	})
	if e == nil || e.User != "alice" || e.Agent != "mailer" {
		t.Errorf("decision event attribution = %+v", e)
	}

	// The token alone, or with another key's proof, or with a replayed proof, is refused.
	init := `{"jsonrpc":"2.0","id":1,"method":"ping"}`
	if resp, _ := h.post(raw, init, nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("task token as a bearer token: %d", resp.StatusCode)
	}
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	proof, _ := token.Proof(other, jose.ES256, "POST", h.url, raw, "j1", time.Now())
	if resp, _ := h.post("", init, map[string]string{"Authorization": "DPoP " + raw, "DPoP": proof}); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("stolen token with the thief's key: %d", resp.StatusCode)
	}
	good, _ := token.Proof(key, jose.ES256, "POST", h.url, raw, "j2", time.Now())
	h.post("", init, map[string]string{"Authorization": "DPoP " + raw, "DPoP": good})
	if resp, _ := h.post("", init, map[string]string{"Authorization": "DPoP " + raw, "DPoP": good}); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("replayed proof: %d", resp.StatusCode)
	}
	wrongURL, _ := token.Proof(key, jose.ES256, "POST", "http://elsewhere.test/mcp", raw, "j3", time.Now())
	if resp, body := h.post("", init, map[string]string{"Authorization": "DPoP " + raw, "DPoP": wrongURL}); resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "unauthenticated") {
		t.Errorf("proof for another URL: %d", resp.StatusCode)
	}
}

func TestApprovalForTheRestOfTheTask(t *testing.T) {
	t.Parallel()
	h := startGateway(t, demoConfig+"approvals: {timeout: 20s}\n", map[string]string{"policy.cedar": approvalPolicy})
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	jkt, _ := token.Thumbprint(key.Public())
	ctx := context.Background()
	raw, task, err := cli(t, h.cfg).StartTask(ctx, token.Task{Agent: "mailer", Tools: []string{"demo__send_message"}, Budget: 10, JKT: jkt}, "", 5*time.Minute, "test")
	if err != nil {
		t.Fatal(err)
	}
	connect := func() *mcp.ClientSession {
		s, err := mcp.NewClient(&mcp.Implementation{Name: "task-agent"}, nil).Connect(ctx,
			&mcp.StreamableClientTransport{Endpoint: h.url, HTTPClient: &http.Client{Transport: &token.DPoPTransport{Token: raw, Key: key}}, MaxRetries: -1}, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	send := func(s *mcp.ClientSession, to string) error {
		_, err := s.CallTool(ctx, &mcp.CallToolParams{Name: "demo__send_message", Arguments: map[string]any{"to": to, "body": to}})
		return err
	}
	errc := make(chan error, 1)
	go func() { errc <- send(connect(), "a@partner.test") }()
	var id string
	for i := 0; i < 200 && id == ""; i++ {
		rs, _ := cli(t, h.cfg).ListApprovals(ctx, "pending")
		if len(rs) > 0 {
			id = rs[0].ID
			if rs[0].Task != task.ID {
				t.Fatalf("request task %q, want %q", rs[0].Task, task.ID)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := cli(t, h.cfg).DecideApproval(ctx, id, "approved", "alice", "task", ""); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	// A new session of the same task needs no new approval.
	if err := send(connect(), "b@partner.test"); err != nil {
		t.Fatalf("task-scoped approval not honoured: %v", err)
	}
}

// exchange asks the gateway for a delegated token (RFC 8693), proving
// possession of the parent token with key.
func exchange(t *testing.T, h *harness, parent string, key *ecdsa.PrivateKey, form url.Values) (int, map[string]any) {
	t.Helper()
	form.Set("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange")
	form.Set("subject_token", parent)
	form.Set("subject_token_type", "urn:ietf:params:oauth:token-type:access_token")
	endpoint := "http://" + h.g.AgentAddr() + "/oauth/token"
	req, _ := http.NewRequest("POST", endpoint, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("traceparent", "00-"+chainTrace+"-1111111111111111-01")
	proof, _ := token.Proof(key, jose.ES256, "POST", endpoint, parent, fmt.Sprint("x-", time.Now().UnixNano()), time.Now())
	req.Header.Set("DPoP", proof)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

const chainTrace = "aaaabbbbccccddddeeeeffff00001111"

func TestDelegationNarrowsAndRevocationCutsTheTree(t *testing.T) {
	t.Parallel()
	h := startGateway(t, demoConfig, map[string]string{"policy.cedar": demoPolicy + `
@id("mailer-delegates-to-reader") permit (principal == Agent::"mailer", action == Action::"delegate", resource == Agent::"reader");`})
	ctx := context.Background()
	mKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	mJKT, _ := token.Thumbprint(mKey.Public())
	rJKT, _ := token.Thumbprint(rKey.Public())
	parent, task, err := cli(t, h.cfg).StartTask(ctx, token.Task{Agent: "mailer", User: "alice", Tools: []string{"demo__list_files", "demo__read_file"}, Budget: 10, Depth: 1, JKT: mJKT}, "", 5*time.Minute, "test")
	if err != nil {
		t.Fatal(err)
	}
	connect := func(tok string, key *ecdsa.PrivateKey) *mcp.ClientSession {
		s, err := mcp.NewClient(&mcp.Implementation{Name: "a"}, nil).Connect(ctx,
			&mcp.StreamableClientTransport{Endpoint: h.url, HTTPClient: &http.Client{Transport: &token.DPoPTransport{Token: tok, Key: key}}, MaxRetries: -1}, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	traced := func(s *mcp.ClientSession, tool string) error {
		_, err := s.CallTool(ctx, &mcp.CallToolParams{Name: tool, Arguments: map[string]any{}, Meta: mcp.Meta{"traceparent": "00-" + chainTrace + "-2222222222222222-01"}})
		return err
	}
	orchestrator := connect(parent, mKey)
	if err := traced(orchestrator, "demo__list_files"); err != nil {
		t.Fatal(err)
	}

	// Widening is refused.
	for name, form := range map[string]url.Values{
		"a tool the parent lacks": {"audience": {"reader"}, "scope": {"demo__send_message"}, "budget": {"2"}, "dpop_jkt": {rJKT}},
		"more budget than left":   {"audience": {"reader"}, "scope": {"demo__list_files"}, "budget": {"50"}, "dpop_jkt": {rJKT}},
		"an agent not permitted":  {"audience": {"nobody"}, "scope": {"demo__list_files"}, "budget": {"2"}, "dpop_jkt": {rJKT}},
		"no key for the receiver": {"audience": {"reader"}, "scope": {"demo__list_files"}, "budget": {"2"}},
	} {
		if code, out := exchange(t, h, parent, mKey, form); code == http.StatusOK {
			t.Errorf("%s: delegated %v", name, out)
		}
	}
	// A thief with the token but not the key cannot delegate.
	if code, _ := exchange(t, h, parent, rKey, url.Values{"audience": {"reader"}, "scope": {"demo__list_files"}, "budget": {"2"}, "dpop_jkt": {rJKT}}); code != http.StatusUnauthorized {
		t.Errorf("delegation without the parent's key: %d", code)
	}

	code, out := exchange(t, h, parent, mKey, url.Values{"audience": {"reader"}, "scope": {"demo__list_files"}, "budget": {"3"}, "dpop_jkt": {rJKT}})
	if code != http.StatusOK || out["token_type"] != "DPoP" {
		t.Fatalf("delegation: %d %v", code, out)
	}
	child := out["access_token"].(string)
	worker := connect(child, rKey)
	if got := toolNames(t, worker); !slices.Equal(got, []string{"demo__list_files"}) {
		t.Errorf("delegate sees %v", got)
	}
	if err := traced(worker, "demo__list_files"); err != nil {
		t.Fatal(err)
	}
	e := h.findEvent(func(e *audit.Event) bool {
		return e.Agent == "reader" && e.Task == task.ID && e.Outcome == audit.OutcomeAllow
	})
	if e == nil || e.User != "alice" || !slices.Equal(e.Actors, []string{"mailer"}) {
		t.Errorf("delegated call's event = %+v; want the original user, task and act chain", e)
	}
	// The child cannot delegate further (depth 0).
	if code, _ := exchange(t, h, child, rKey, url.Values{"audience": {"mailer"}, "scope": {"demo__list_files"}, "budget": {"1"}, "dpop_jkt": {mJKT}}); code == http.StatusOK {
		t.Error("a depth-0 token delegated")
	}

	// One query pulls the whole chain: the orchestrator's call, the exchange, the delegate's call.
	rows, err := h.g.store.Events(ctx, store.EventQuery{TraceID: chainTrace})
	if err != nil {
		t.Fatal(err)
	}
	var agents []string
	for _, r := range rows {
		ev, _ := audit.Decode(r)
		agents = append(agents, ev.Agent+":"+string(ev.Code))
	}
	if j := strings.Join(agents, " "); !strings.Contains(j, "mailer:") || !strings.Contains(j, "mailer:token_exchange") || !strings.Contains(j, "reader:") {
		t.Errorf("trace %s pulls %v", chainTrace, agents)
	}

	// Revoking the task cuts off parent and child on their next request.
	if err := cli(t, h.cfg).Revoke(ctx, store.RevokeTask, task.ID, "alice", "done"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(authn.RevocationRefresh + 100*time.Millisecond)
	if err := traced(worker, "demo__list_files"); err == nil {
		t.Error("delegated token works after its task was revoked")
	}
	if err := traced(orchestrator, "demo__list_files"); err == nil {
		t.Error("parent token works after its task was revoked")
	}
}
