package gateway

import (
	"context"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/reason"
)

// Declared baselines, alerts and containment: a session that calls a tool
// outside its agent's baseline raises an unexpected_tool alert (high,
// with its ATLAS technique) and is terminated from its next message on;
// a session that calls faster than declared raises a rate alert and is
// held to read-only tools; other sessions are untouched.
func TestDeclaredBaselineAlertsAndContainment(t *testing.T) {
	h := startGateway(t, demoConfig+`detection:
  baselines:
    - {agent: mailer, tools: ["demo__read_file", "demo__list_files"], calls_per_minute: 4}
  response:
    - {alerts: [unexpected_tool], action: terminate_session}
    - {alerts: [rate], action: read_only}
`, map[string]string{"policy.cedar": demoPolicy})
	defer h.stop()
	ctx := context.Background()
	read := &mcp.CallToolParams{Name: "demo__read_file", Arguments: map[string]any{"path": "notes/meeting.txt"}}
	send := &mcp.CallToolParams{Name: "demo__send_message", Arguments: map[string]any{"to": "bob@example.com", "body": "hi"}}

	// Unexpected tool: allowed by policy, outside the baseline.
	s1 := h.mustConnect("mailer")
	if _, err := s1.CallTool(ctx, send); err != nil {
		t.Fatalf("the first unexpected call is decided by policy alone: %v", err)
	}
	e := h.findEvent(func(e *audit.Event) bool { return e.Type == audit.TypeAlert && e.Code == reason.AlertUnexpectedTool })
	if e == nil || e.Severity != "high" || len(e.Techniques) == 0 || e.Agent != "mailer" || e.SessionID == "" {
		t.Fatalf("unexpected_tool alert: %+v", e)
	}
	if h.findEvent(func(e *audit.Event) bool { return e.Type == audit.TypeResponse && e.Code == reason.ResponseTerminate }) == nil {
		t.Fatal("no terminate_session response event")
	}
	_, err := s1.CallTool(ctx, read)
	assertDenied(t, err, reason.Contained)

	// Rate: the fifth call in a minute; then read-only.
	s2 := h.mustConnect("mailer")
	for i := range 5 {
		if _, err := s2.CallTool(ctx, read); err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
	}
	if h.findEvent(func(e *audit.Event) bool { return e.Type == audit.TypeAlert && e.Code == reason.AlertRate }) == nil {
		t.Fatal("no rate alert")
	}
	if _, err := s2.CallTool(ctx, read); err != nil {
		t.Fatalf("a read-only tool in a read-only session: %v", err)
	}
	_, err = s2.CallTool(ctx, send)
	assertDenied(t, err, reason.Contained)

	// Another agent's session is untouched.
	s3 := h.mustConnect("reader")
	if _, err := s3.CallTool(ctx, read); err != nil {
		t.Fatalf("another agent: %v", err)
	}
}
