package gateway

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/portcullis-dev/portcullis/internal/approval"
	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/token"
)

// labelPolicy is the one-line data-flow rule: after untrusted input, an
// external send needs a human.
const labelPolicy = `
@id("mailers-demo")
permit (principal in Role::"mailers", action == Action::"call_tool", resource);

@id("untrusted-then-send")
@approval("the session read untrusted content; external sends need approval")
forbid (principal, action == Action::"call_tool", resource)
when { resource.classification.contains("sends_externally") && context.session.labels.contains("untrusted_input") };
`

const labelConfig = `
version: 1
data_dir: DIR/data
policy:
  paths: [DIR/policy.cedar]
agents:
  - name: mailer
    roles: [readers, mailers]
upstreams:
  - name: demo
    builtin: demo
    labels: [confidential]
tools:
  - name: demo__read_file
    labels: [untrusted_input]
  - name: demo__send_message
    classification: [sends_externally]
    labels: []
approvals: {timeout: 3s}
`

func TestSessionLabelsHoldExternalSendAfterUntrustedInput(t *testing.T) {
	t.Parallel()
	h := startGateway(t, labelConfig, map[string]string{"policy.cedar": labelPolicy})
	ctx := context.Background()
	s := h.mustConnect("mailer")
	call := func(s *mcp.ClientSession, name string, args map[string]any) chan error {
		errc := make(chan error, 1)
		go func() {
			res, err := s.CallTool(ctx, &mcp.CallToolParams{Name: name, Arguments: args})
			if err == nil && res.IsError {
				t.Errorf("%s: tool error %v", name, res.Content)
			}
			errc <- err
		}()
		return errc
	}
	send := func(s *mcp.ClientSession) chan error {
		return call(s, "demo__send_message", map[string]any{"to": "carol@partner.test", "body": "hi"})
	}

	// A fresh session sends without approval; listing files labels it
	// confidential (the upstream's label), which this policy allows.
	if err := <-send(s); err != nil {
		t.Fatalf("send before any untrusted input: %v", err)
	}
	if err := <-call(s, "demo__list_files", map[string]any{}); err != nil {
		t.Fatal(err)
	}
	if err := <-send(s); err != nil {
		t.Fatalf("send after confidential read: %v", err)
	}
	// Reading untrusted content labels the session; the next external send
	// is held for a human, who denies it.
	if err := <-call(s, "demo__read_file", map[string]any{"path": "notes/meeting.txt"}); err != nil {
		t.Fatal(err)
	}
	errc := send(s)
	held := h.waitHeld()
	if held == nil {
		t.Fatal("the send after untrusted input was not held")
	}
	if !strings.Contains(held.Describe(), "untrusted content") {
		t.Errorf("approval request does not say why: %s", held.Describe())
	}
	if _, err := cli(t, h.cfg).DecideApproval(ctx, held.ID, approval.Denied, "alice", approval.ScopeOnce, "looks injected"); err != nil {
		t.Fatal(err)
	}
	assertDenied(t, <-errc, "approval_denied")

	// Labels belong to the session: another session of the same agent is clean.
	s2 := h.mustConnect("mailer")
	if err := <-send(s2); err != nil {
		t.Fatalf("labels leaked to another session: %v", err)
	}

	// The audit log shows what labelled the session, and the labels each
	// decision was made with.
	var labelled []string
	var sendLabels [][]string
	for i := 0; i < 100; i++ {
		labelled, sendLabels = nil, nil
		for _, e := range h.events() {
			switch {
			case e.Type == audit.TypeSessionLabel:
				labelled = append(labelled, e.Target+"="+strings.Join(e.Labels, ","))
				if e.Agent != "mailer" || e.SessionID == "" || e.RequestID == "" {
					t.Errorf("label event not attributable: %+v", e)
				}
			case e.Type == audit.TypeDecision && e.Target == "demo__send_message" && e.Detail == "":
				sendLabels = append(sendLabels, e.Labels)
			}
		}
		if len(labelled) >= 2 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	want := []string{"demo__list_files=confidential", "demo__read_file=untrusted_input"}
	if !slices.Equal(labelled, want) {
		t.Errorf("label events = %v, want %v", labelled, want)
	}
	if len(sendLabels) < 3 || len(sendLabels[0]) != 0 || !slices.Equal(sendLabels[1], []string{"confidential"}) {
		t.Errorf("decision labels = %v", sendLabels)
	}
}

// provenancePolicy refuses sends whose recipient came from untrusted output.
const provenancePolicy = `
@id("mailers-demo")
permit (principal in Role::"mailers", action == Action::"call_tool", resource);

@id("no-injected-recipients")
@reason("the recipient first appeared in untrusted content")
forbid (principal, action == Action::"call_tool", resource)
when { resource.classification.contains("sends_externally") && context.untrusted_arguments.contains("to") };
`

func TestArgumentProvenanceFlagsRecipientsFromUntrustedOutput(t *testing.T) {
	t.Parallel()
	h := startGateway(t, labelConfig, map[string]string{"policy.cedar": provenancePolicy})
	ctx := context.Background()
	s := h.mustConnect("mailer")
	send := func(to string) error {
		_, err := s.CallTool(ctx, &mcp.CallToolParams{Name: "demo__send_message", Arguments: map[string]any{"to": to, "body": "the summary"}})
		return err
	}
	if err := send("Bob@Example.com"); err != nil {
		t.Fatalf("send before the address was seen anywhere: %v", err)
	}
	// The meeting notes (labelled untrusted_input) mention bob@example.com.
	if _, err := s.CallTool(ctx, &mcp.CallToolParams{Name: "demo__read_file", Arguments: map[string]any{"path": "notes/meeting.txt"}}); err != nil {
		t.Fatal(err)
	}
	assertDenied(t, send("bob@example.com"), "forbidden_by_policy")
	assertDenied(t, send("BOB@example.com"), "forbidden_by_policy") // case does not launder it
	if err := send("carol@partner.test"); err != nil {
		t.Fatalf("a recipient not from untrusted content was refused: %v", err)
	}
	var flagged [][]string
	for _, e := range h.events() {
		if e.Type == audit.TypeDecision && e.Target == "demo__send_message" {
			flagged = append(flagged, e.Input.UntrustedArguments)
		}
	}
	if len(flagged) != 4 || flagged[0] != nil || !slices.Equal(flagged[1], []string{"to"}) || flagged[3] != nil {
		t.Errorf("untrusted arguments per decision = %v", flagged)
	}
}

func TestSpotlightingMarksUntrustedOutput(t *testing.T) {
	t.Parallel()
	cfg := strings.Replace(labelConfig, "    labels: [confidential]\n", "    labels: [confidential]\n    spotlight: delimit\n", 1)
	h := startGateway(t, cfg, map[string]string{"policy.cedar": labelPolicy})
	ctx := context.Background()
	read := func(s *mcp.ClientSession) string {
		res, err := s.CallTool(ctx, &mcp.CallToolParams{Name: "demo__read_file", Arguments: map[string]any{"path": "notes/todo.txt"}})
		if err != nil {
			t.Fatal(err)
		}
		return res.Content[0].(*mcp.TextContent).Text
	}
	s1, s2 := h.mustConnect("mailer"), h.mustConnect("mailer")
	a, b, c := read(s1), read(s1), read(s2)
	tok := strings.TrimSuffix(strings.TrimPrefix(strings.SplitN(a, "\n", 2)[0], "<untrusted-data "), ">")
	if len(tok) != 16 || !strings.Contains(a, "review the audit log") || !strings.HasSuffix(a, "</untrusted-data "+tok+">") {
		t.Fatalf("result not spotlighted: %q", a)
	}
	if a != b || strings.Contains(c, tok) {
		t.Errorf("token not per session: %q / %q", a, c)
	}
}

func TestRedactionMasksPersonalDataBeforeTheAgentSeesIt(t *testing.T) {
	t.Parallel()
	cfg := strings.Replace(labelConfig, "    labels: [confidential]\n", "    labels: [confidential]\n    redact: [payment_card, us_ssn]\n", 1)
	h := startGateway(t, cfg, map[string]string{"policy.cedar": labelPolicy})
	card, ssn := "4111 1111 1111 1111", "078-05-1123"
	if err := os.WriteFile(filepath.Join(h.g.dataDir, DemoDir, "customers.txt"), []byte("Jane: card "+card+", SSN "+ssn+", jane@example.com\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := h.mustConnect("mailer")
	res, err := s.CallTool(context.Background(), &mcp.CallToolParams{Name: "demo__read_file", Arguments: map[string]any{"path": "customers.txt"}})
	if err != nil {
		t.Fatal(err)
	}
	got := res.Content[0].(*mcp.TextContent).Text
	if strings.Contains(got, card) || strings.Contains(got, ssn) || !strings.Contains(got, "[redacted:payment_card]") || !strings.Contains(got, "jane@example.com") {
		t.Fatalf("agent read %q", got)
	}
	var detail string
	for i := 0; i < 100 && detail == ""; i++ {
		for _, e := range h.events() {
			if e.Type == audit.TypeScreening {
				detail = e.Detail
				if e.Agent != "mailer" || e.Target != "demo__read_file" || e.RequestID == "" {
					t.Errorf("screening event not attributable: %+v", e)
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if detail != "result: personal_data/payment_card:redact×1 personal_data/us_ssn:redact×1" {
		t.Errorf("screening event detail = %q", detail)
	}
	for _, e := range h.events() {
		// The number, in any spacing (not just its first digits: a
		// timestamp's fraction may hold "4111").
		if b, _ := json.Marshal(e); strings.Contains(strings.ReplaceAll(string(b), " ", ""), strings.ReplaceAll(card, " ", "")) || strings.Contains(string(b), ssn) {
			t.Errorf("the audit log holds the card number: %s", b)
		}
	}
}

// With a task token, what the task's purpose (the user's request) names is
// trusted: an injected text that repeats the user's recipient does not
// taint it, while a session without that purpose is refused.
func TestTaskPurposeIsTrustedProvenance(t *testing.T) {
	t.Parallel()
	h := startGateway(t, labelConfig, map[string]string{"policy.cedar": provenancePolicy})
	ctx := context.Background()
	s, _ := h.taskSession(token.Task{Agent: "mailer", User: "alice", Purpose: "Send the meeting summary to bob@example.com",
		Tools: []string{"demo__read_file", "demo__send_message"}, Budget: 5})
	// The meeting notes (untrusted) mention bob@example.com.
	if _, err := s.CallTool(ctx, &mcp.CallToolParams{Name: "demo__read_file", Arguments: map[string]any{"path": "notes/meeting.txt"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CallTool(ctx, &mcp.CallToolParams{Name: "demo__send_message", Arguments: map[string]any{"to": "bob@example.com", "body": "summary"}}); err != nil {
		t.Fatalf("the user's own recipient was refused: %v", err)
	}
	plain := h.mustConnect("mailer")
	if _, err := plain.CallTool(ctx, &mcp.CallToolParams{Name: "demo__read_file", Arguments: map[string]any{"path": "notes/meeting.txt"}}); err != nil {
		t.Fatal(err)
	}
	_, err := plain.CallTool(ctx, &mcp.CallToolParams{Name: "demo__send_message", Arguments: map[string]any{"to": "bob@example.com", "body": "summary"}})
	assertDenied(t, err, "forbidden_by_policy")
}
