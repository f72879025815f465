package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/reason"
)

// scriptedMessages is a local HTTP server speaking Anthropic's Messages
// API with scripted answers (no network): first it asks for the alert's
// session timeline, then, given the tool's result, it answers with a
// disposition. It keeps what it was sent.
type scriptedMessages struct {
	mu       sync.Mutex
	tools    []string // the tools offered to the model
	results  []string // the tool results it was given
	apiKeys  []string
	requests int
}

var sessionRE = regexp.MustCompile(`"session_id": "([^"]+)"`)

func (m *scriptedMessages) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != "POST" || r.URL.Path != "/v1/messages" {
		http.Error(w, "not found", 404)
		return
	}
	var req struct {
		Messages []struct {
			Role    string            `json:"role"`
			Content []json.RawMessage `json:"content"`
		} `json:"messages"`
		Tools []struct {
			Name string `json:"name"`
		} `json:"tools"`
	}
	body, _ := io.ReadAll(r.Body)
	if err := json.Unmarshal(body, &req); err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.requests++
	key := r.Header.Get("X-Api-Key")
	if b, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && key == "" {
		key = b // the SDK's credential header
	}
	m.apiKeys = append(m.apiKeys, key)
	m.tools = m.tools[:0]
	for _, t := range req.Tools {
		m.tools = append(m.tools, t.Name)
	}
	reply := func(stop string, content ...any) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"id": fmt.Sprint("msg_", m.requests), "type": "message", "role": "assistant", "model": "scripted",
			"content": content, "stop_reason": stop, "stop_sequence": nil, "usage": map[string]int{"input_tokens": 10, "output_tokens": 10}})
	}
	if len(req.Messages) == 1 {
		var first struct {
			Text string `json:"text"`
		}
		json.Unmarshal(req.Messages[0].Content[0], &first)
		sm := sessionRE.FindStringSubmatch(first.Text)
		if sm == nil {
			http.Error(w, "no session in the alert", 400)
			return
		}
		reply("tool_use", map[string]any{"type": "text", "text": "Let me look at the session."},
			map[string]any{"type": "tool_use", "id": "toolu_1", "name": "evidence__session_timeline", "input": map[string]any{"session_id": sm[1]}})
		return
	}
	last := req.Messages[len(req.Messages)-1]
	for _, c := range last.Content {
		var tr struct {
			Type    string `json:"type"`
			Content []struct {
				Text string `json:"text"`
			} `json:"content"`
		}
		json.Unmarshal(c, &tr)
		for _, t := range tr.Content {
			m.results = append(m.results, t.Text)
		}
	}
	reply("end_turn", map[string]any{"type": "text", "text": "```json\n" +
		`{"verdict": "malicious", "confidence": 0.85, "recommended": "revoke_agent", "reasons": ["sent mail outside its baseline", "from the timeline"]}` + "\n```"})
}

// TestModelTriageThroughTheGateway: an alert's triage is done by the
// model-backed backend against a local Messages API server; the model's
// queries are MCP calls through the gateway under the triage agent's
// identity (decisions in the audit log), it is offered only the read-only
// evidence tools its policy permits, the evidence it gets is the real
// session, and its disposition is the alert's triage.
func TestModelTriageThroughTheGateway(t *testing.T) {
	m := &scriptedMessages{}
	api := httptest.NewServer(m)
	defer api.Close()
	t.Setenv("PORTCULLIS_TEST_ANTHROPIC_KEY", "sk-test-key")
	cfg := strings.Replace(demoConfig, "agents:", "agents:\n  - {name: triage-bot, roles: [soc]}", 1) + `  - {name: evidence, builtin: evidence}
detection:
  baselines:
    - {agent: mailer, tools: [demo__read_file]}
  triage: {model: scripted, base_url: "` + api.URL + `", api_key: {from_env: PORTCULLIS_TEST_ANTHROPIC_KEY}, agent: triage-bot}
  response:
    - {alerts: [unexpected_tool], action: terminate_session}
`
	h := startGateway(t, cfg, map[string]string{"policy.cedar": demoPolicy + `
@id("soc-evidence") permit (principal in Role::"soc", action == Action::"call_tool", resource in Upstream::"evidence") when { resource.read_only_hint };
@id("too-broad") permit (principal == Agent::"reader", action == Action::"call_tool", resource in Upstream::"evidence");`})
	defer h.stop()
	ctx := context.Background()
	s := h.mustConnect("mailer")
	_, err := s.CallTool(ctx, &mcp.CallToolParams{Name: "demo__send_message", Arguments: map[string]any{"to": "bob@example.com", "body": "hi"}})
	assertDenied(t, err, reason.Contained)
	var tri *audit.Event
	for i := 0; i < 200 && tri == nil; i++ {
		tri = h.findEvent(func(e *audit.Event) bool { return e.Type == audit.TypeTriage })
		time.Sleep(25 * time.Millisecond)
	}
	if tri == nil {
		t.Fatal("no triage event")
	}
	if tri.Code != reason.VerdictMalicious || !strings.HasPrefix(tri.Detail, "model (2 turns, queries [evidence__session_timeline])") {
		t.Fatalf("triage: %s %s", tri.Code, tri.Detail)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.apiKeys) != 2 || m.apiKeys[0] != "sk-test-key" {
		t.Errorf("API keys sent: %v", m.apiKeys)
	}
	for _, name := range m.tools {
		if !strings.HasPrefix(name, "evidence__") {
			t.Errorf("the model was offered %s (least agency: the evidence tools only)", name)
		}
	}
	if len(m.tools) < 4 {
		t.Errorf("tools offered: %v", m.tools)
	}
	if len(m.results) != 1 || !strings.Contains(m.results[0], "demo__send_message") || !strings.Contains(m.results[0], `"type":"alert"`) {
		t.Fatalf("the evidence the model got: %v", m.results)
	}
	q := h.findEvent(func(e *audit.Event) bool {
		return e.Type == audit.TypeDecision && e.Agent == "triage-bot" && e.Target == "evidence__session_timeline" && e.Outcome == audit.OutcomeAllow
	})
	if q == nil {
		t.Fatal("the model's query is not in the audit log under the triage agent")
	}
	// Another agent does not read the evidence, even where a policy
	// (too broad) permits it: the evidence server serves the triage agent
	// only, as the gateway vouches for the caller; nor can an agent claim
	// to be it.
	other := h.mustConnect("reader")
	for _, meta := range []mcp.Meta{nil, {"dev.portcullis/caller": map[string]any{"agent": "triage-bot"}}} {
		res, err := other.CallTool(ctx, &mcp.CallToolParams{Name: "evidence__agent_alerts", Arguments: map[string]any{"agent": "mailer"}, Meta: meta})
		if err == nil && !res.IsError {
			t.Fatalf("another agent read the evidence (meta %v)", meta)
		}
	}
	if m := h.findEvent(func(e *audit.Event) bool {
		return e.Agent == "reader" && e.Target == "evidence__agent_alerts" && e.Outcome == audit.OutcomeAllow
	}); m == nil {
		t.Fatal("the too broad policy was not in force (the test proves nothing)")
	}
}
