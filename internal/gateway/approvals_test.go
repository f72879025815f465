package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/portcullis-dev/portcullis/internal/approval"
	"github.com/portcullis-dev/portcullis/internal/audit"
)

const approvalPolicy = `
@id("mailers-send")
permit (principal in Role::"mailers", action == Action::"call_tool", resource == Tool::"demo__send_message");

@id("external-mail-needs-approval")
@approval("mail to a recipient outside example.com")
forbid (principal, action == Action::"call_tool", resource == Tool::"demo__send_message")
unless { context.arguments has to && context.arguments.to like "*@example.com" };
`

func TestHumanApproval(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var notified []map[string]any
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m map[string]any
		json.NewDecoder(r.Body).Decode(&m)
		mu.Lock()
		notified = append(notified, m)
		mu.Unlock()
	}))
	t.Cleanup(hook.Close)
	h := startGateway(t, demoConfig+fmt.Sprintf("approvals: {timeout: 2s, webhook: {url: %q}}\n", hook.URL), map[string]string{"policy.cedar": approvalPolicy})
	outbox := filepath.Join(h.g.dataDir, DemoDir, "outbox.jsonl")
	ctx := context.Background()
	s := h.mustConnect("mailer")
	send := func(to, body string) chan error {
		errc := make(chan error, 1)
		go func() {
			_, err := s.CallTool(ctx, &mcp.CallToolParams{Name: "demo__send_message", Arguments: map[string]any{"to": to, "body": body}})
			errc <- err
		}()
		return errc
	}
	pending := func() *approval.Request {
		t.Helper()
		for i := 0; i < 100; i++ {
			rs, err := cli(t, h.cfg).ListApprovals(ctx, approval.Pending)
			if err != nil {
				t.Fatal(err)
			}
			if len(rs) > 0 {
				return rs[0]
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatal("no pending approval")
		return nil
	}

	// Internal mail needs no approval.
	if err := <-send("bob@example.com", "internal"); err != nil {
		t.Fatal(err)
	}
	// External mail is held until a reviewer approves it.
	errc := send("carol@partner.test", "the contract")
	r := pending()
	if r.Agent != "mailer" || r.Tool != "demo__send_message" || !strings.Contains(string(r.Arguments), "carol@partner.test") ||
		!strings.Contains(r.Describe(), "mail to a recipient outside example.com") {
		t.Fatalf("request = %+v", r)
	}
	select {
	case err := <-errc:
		t.Fatalf("held call returned before a decision: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	if _, err := cli(t, h.cfg).DecideApproval(ctx, r.ID, approval.Approved, "mailer", approval.ScopeOnce, ""); !errors.Is(err, approval.ErrSelfApproval) {
		t.Fatalf("the agent approved its own call: %v", err)
	}
	if _, err := cli(t, h.cfg).DecideApproval(ctx, r.ID, approval.Approved, "alice", approval.ScopeOnce, "ok, expected"); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("approved call: %v", err)
	}
	if b, _ := os.ReadFile(outbox); !strings.Contains(string(b), "carol@partner.test") {
		t.Fatal("approved message not sent")
	}
	if _, err := cli(t, h.cfg).DecideApproval(ctx, r.ID, approval.Approved, "alice", approval.ScopeOnce, ""); !errors.Is(err, approval.ErrNotPending) {
		t.Errorf("an approval was decided twice: %v", err)
	}

	// Single use: the same call again needs a new approval; denied, it fails.
	errc = send("carol@partner.test", "the contract")
	r2 := pending()
	if r2.ID == r.ID {
		t.Fatal("approval reused")
	}
	cli(t, h.cfg).DecideApproval(ctx, r2.ID, approval.Denied, "alice", approval.ScopeOnce, "not today")
	assertDenied(t, <-errc, "approval_denied")

	// No decision before the timeout is a denial.
	assertDenied(t, <-send("dave@partner.test", "x"), "approval_timeout")

	// A session-scoped approval covers later calls of the tool in the session.
	errc = send("erin@partner.test", "1")
	cli(t, h.cfg).DecideApproval(ctx, pending().ID, approval.Approved, "alice", approval.ScopeSession, "")
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if err := <-send("frank@partner.test", "2"); err != nil {
		t.Fatalf("session approval not honoured: %v", err)
	}
	if err := <-send2(h, "frank@partner.test"); err == nil {
		t.Fatal("a session approval leaked to another session")
	}

	b, _ := os.ReadFile(outbox)
	for _, who := range []string{"dave@partner.test"} {
		if strings.Contains(string(b), who) {
			t.Errorf("unapproved message to %s was sent", who)
		}
	}
	var codes []string
	for _, e := range h.events() {
		if e.Type == audit.TypeDecision && e.Target == "demo__send_message" || e.Type == audit.TypeApproval {
			codes = append(codes, string(e.Type)+":"+string(e.Outcome)+":"+string(e.Code))
		}
	}
	for _, want := range []string{"decision:deny:approval_required", "approval:allow:approval_approved", "decision:allow:", "approval:deny:approval_denied", "decision:deny:approval_denied", "decision:deny:approval_timeout"} {
		if !strings.Contains(strings.Join(codes, " "), want) {
			t.Errorf("audit lacks %s: %v", want, codes)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(notified) < 4 || notified[0]["tool"] != "demo__send_message" || !strings.Contains(fmt.Sprint(notified[0]["text"]), "carol@partner.test") {
		t.Errorf("webhook notifications = %v", notified)
	}
}

// send2 sends from a second session of the same agent; with a 2s approval
// timeout and nobody approving, it fails.
func send2(h *harness, to string) chan error {
	errc := make(chan error, 1)
	s := h.mustConnect("mailer")
	go func() {
		_, err := s.CallTool(context.Background(), &mcp.CallToolParams{Name: "demo__send_message", Arguments: map[string]any{"to": to, "body": "3"}})
		errc <- err
	}()
	return errc
}

func TestAdminAPIForApprovals(t *testing.T) {
	t.Parallel()
	h := startGateway(t, strings.Replace(demoConfig, "agents:", "admins: [{name: alice}]\nagents:", 1)+"approvals: {timeout: 30s}\n", map[string]string{"policy.cedar": approvalPolicy})
	admin, _, err := cli(t, h.cfg).IssueAdminToken(context.Background(), "alice", time.Minute, "test")
	if err != nil {
		t.Fatal(err)
	}
	api := func(method, path, token, body string) (int, string) {
		req, _ := http.NewRequest(method, "http://"+h.g.AdminAddr()+path, strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b := new(strings.Builder)
		io.Copy(b, resp.Body)
		return resp.StatusCode, b.String()
	}
	for name, tok := range map[string]string{"none": "", "agent token": h.token("mailer", time.Minute), "garbage": "x.y.z"} {
		if code, _ := api("GET", "/v1/approvals", tok, ""); code != http.StatusUnauthorized {
			t.Errorf("%s: %d, want 401", name, code)
		}
	}
	s := h.mustConnect("mailer")
	errc := make(chan error, 1)
	go func() {
		_, err := s.CallTool(context.Background(), &mcp.CallToolParams{Name: "demo__send_message", Arguments: map[string]any{"to": "x@partner.test", "body": "hello"}})
		errc <- err
	}()
	var list []map[string]any
	for i := 0; i < 100 && len(list) == 0; i++ {
		_, body := api("GET", "/v1/approvals", admin, "")
		json.Unmarshal([]byte(body), &list)
		time.Sleep(20 * time.Millisecond)
	}
	if len(list) != 1 || list[0]["agent"] != "mailer" {
		t.Fatalf("pending via API: %v", list)
	}
	id := list[0]["id"].(string)
	if code, body := api("POST", "/v1/approvals/"+id+"/approve", admin, `{"scope":"once","comment":"fine","extra":1}`); code != http.StatusBadRequest {
		t.Errorf("unknown body field accepted: %d %s", code, body)
	}
	if code, body := api("POST", "/v1/approvals/"+id+"/approve", admin, `{"comment":"fine"}`); code != http.StatusOK || !strings.Contains(body, `"decided_by":"alice"`) {
		t.Fatalf("approve via API: %d %s", code, body)
	}
	if err := <-errc; err != nil {
		t.Fatalf("approved call: %v", err)
	}
	if code, _ := api("POST", "/v1/approvals/"+id+"/deny", admin, ""); code != http.StatusConflict {
		t.Errorf("decided twice: %d", code)
	}
}
