package gateway

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/portcullis-dev/portcullis/internal/approval"
	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/detect"
	"github.com/portcullis-dev/portcullis/internal/mcpproxy"
	"github.com/portcullis-dev/portcullis/internal/ops"
	"github.com/portcullis-dev/portcullis/internal/reason"
	"github.com/portcullis-dev/portcullis/internal/store"
)

// Declared baselines, alerts and containment: a session that calls a tool
// outside its agent's baseline raises an unexpected_tool alert (high,
// with its ATLAS technique) and is terminated from its next message on;
// a session that calls faster than declared raises a rate alert and is
// held to read-only tools; other sessions are untouched.
func TestDeclaredBaselineAlertsAndContainment(t *testing.T) {
	h := startGateway(t, strings.Replace(demoConfig, "agents:", "admins: [{name: soc}]\nagents:", 1)+`tools:
  - {name: demo__read_file, classification: [read_only]}
detection:
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

	// Unexpected tool: allowed by policy, outside the baseline: the
	// response takes effect on that very call (at relay).
	s1 := h.mustConnect("mailer")
	_, err := s1.CallTool(ctx, send)
	assertDenied(t, err, reason.Contained)
	e := h.findEvent(func(e *audit.Event) bool { return e.Type == audit.TypeAlert && e.Code == reason.AlertUnexpectedTool })
	if e == nil || e.Severity != "high" || len(e.Techniques) == 0 || e.Agent != "mailer" || e.SessionID == "" {
		t.Fatalf("unexpected_tool alert: %+v", e)
	}
	if h.findEvent(func(e *audit.Event) bool { return e.Type == audit.TypeResponse && e.Code == reason.ResponseTerminate }) == nil {
		t.Fatal("no terminate_session response event")
	}
	_, err = s1.CallTool(ctx, read)
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

	// Another session of the same agent is untouched: windows and
	// containment are per session.
	s4 := h.mustConnect("mailer")
	if _, err := s4.CallTool(ctx, read); err != nil {
		t.Fatalf("another session of the agent: %v", err)
	}
	// Another agent's session is untouched.
	s3 := h.mustConnect("reader")
	if _, err := s3.CallTool(ctx, read); err != nil {
		t.Fatalf("another agent: %v", err)
	}

	// Every alert gets its first-pass triage (off the hot path), listed
	// with it: the two above, and the contained session's attempt at the
	// unexpected tool; a person acknowledges and resolves one.
	o := cli(t, h.cfg)
	triaged := func(vs []*ops.AlertView) bool {
		for _, v := range vs {
			if v.Triage == nil {
				return false
			}
		}
		return true
	}
	var views []*ops.AlertView
	for i := 0; i < 100; i++ {
		if views, _ = o.Alerts(ctx, "open", 0); len(views) == 3 && triaged(views) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(views) != 3 || !triaged(views) || views[2].Alert.Code != reason.AlertUnexpectedTool || len(views[2].Responses) == 0 {
		t.Fatalf("open alerts with triage: %d", len(views))
	}
	views = views[1:] // the rate alert and the first session's
	for _, v := range views {
		if v.Triage.Code != reason.VerdictSuspicious && v.Triage.Code != reason.VerdictMalicious {
			t.Errorf("%s triaged %s: %s", v.Alert.Code, v.Triage.Code, v.Triage.Detail)
		}
	}
	id := views[1].Alert.Alert
	if err := o.SetAlertState(ctx, id, ops.AlertAcknowledged, "soc", "looking"); err != nil {
		t.Fatal(err)
	}
	if err := o.SetAlertState(ctx, id, ops.AlertResolved, "soc", "contained, agent fixed"); err != nil {
		t.Fatal(err)
	}
	if err := o.SetAlertState(ctx, id, ops.AlertAcknowledged, "soc", ""); err == nil {
		t.Error("a resolved alert was acknowledged again")
	}
	if v, _ := o.ShowAlert(ctx, id); v == nil || v.State != ops.AlertResolved || !strings.Contains(v.Describe(), "contained, agent fixed") {
		t.Errorf("resolved alert: %+v", v)
	}
	// Incidents: the second session's two alerts together; the first
	// session's, resolved, only with --all.
	ins, err := o.Incidents(ctx, true)
	if err != nil || len(ins) != 1 || len(ins[0].Alerts) != 2 || ins[0].Severity != "high" || ins[0].Open != 2 || ins[0].Session == views[1].Alert.SessionID {
		t.Fatalf("open incidents: %v %+v", err, ins)
	}
	if all, _ := o.Incidents(ctx, false); len(all) != 2 {
		t.Errorf("all incidents: %d", len(all))
	}

	// An operator lifts the containment of the first session (undo).
	admin, _, err := o.IssueAdminToken(ctx, "soc", time.Minute, "test")
	if err != nil {
		t.Fatal(err)
	}
	sid := views[1].Alert.SessionID
	req, _ := http.NewRequest(http.MethodPost, "http://"+h.g.AdminAddr()+"/v1/containment/release", strings.NewReader(`{"session":"`+sid+`"}`))
	req.Header.Set("Authorization", "Bearer "+admin)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("release: %v %v", resp.StatusCode, err)
	}
	resp.Body.Close()
	if _, err := s1.CallTool(ctx, read); err != nil {
		t.Fatalf("the released session: %v", err)
	}
}

// TestApprovalDoesNotLiftContainment: a call held for approval whose
// session is contained while it waits is refused even when approved (the
// approval does not bypass the response to an alert).
func TestApprovalDoesNotLiftContainment(t *testing.T) {
	h := startGateway(t, strings.Replace(demoConfig, "agents:", "admins: [{name: soc}]\nagents:", 1)+`approvals: {timeout: 20s}
tools:
  - {name: demo__read_file, classification: [read_only]}
detection:
  baselines:
    - {agent: mailer, tools: ["demo__send_message", "demo__read_file"]}
  response:
    - {alerts: [unexpected_tool], action: terminate_session}
`, map[string]string{"policy.cedar": approvalPolicy + `
permit (principal in Role::"readers", action == Action::"call_tool", resource in Upstream::"demo") when { resource.read_only_hint };
`})
	defer h.stop()
	ctx := context.Background()
	s := h.mustConnect("mailer")
	held := make(chan error, 1)
	go func() {
		_, err := s.CallTool(ctx, &mcp.CallToolParams{Name: "demo__send_message", Arguments: map[string]any{"to": "x@attacker.example", "body": "notes"}})
		held <- err
	}()
	r := h.waitHeld()
	if r == nil {
		t.Fatal("the external mail was not held")
	}
	// Meanwhile the session deviates: terminated.
	_, err := s.CallTool(ctx, &mcp.CallToolParams{Name: "demo__list_files", Arguments: map[string]any{}})
	assertDenied(t, err, reason.Contained)
	if _, err := cli(t, h.cfg).DecideApproval(ctx, r.ID, approval.Approved, "soc", approval.ScopeOnce, "looks fine"); err != nil {
		t.Fatal(err)
	}
	assertDenied(t, <-held, reason.Contained)
	outbox := filepath.Join(h.g.dataDir, DemoDir, "outbox.jsonl")
	if b, _ := os.ReadFile(outbox); strings.Contains(string(b), "attacker.example") {
		t.Fatal("the approved call of a contained session was sent")
	}
}

// Learned baselines through a real gateway: after the learning period a
// tool the agent never used raises an anomaly alert and its session is
// terminated; the learned state is saved to the store, exported, and an
// operator's restore of an edited snapshot is loaded by the running
// gateway (the tool is then normal, and raises nothing).
func TestLearnedBaselineAlertsAndRestore(t *testing.T) {
	h := startGateway(t, demoConfig+`detection:
  learning: {min_observations: 30, sync_interval: 100ms}
  response:
    - {alerts: [anomaly], action: terminate_session}
`, map[string]string{"policy.cedar": demoPolicy})
	defer h.stop()
	ctx := context.Background()
	read := &mcp.CallToolParams{Name: "demo__read_file", Arguments: map[string]any{"path": "notes/meeting.txt"}}
	list := &mcp.CallToolParams{Name: "demo__list_files", Arguments: map[string]any{}}
	send := &mcp.CallToolParams{Name: "demo__send_message", Arguments: map[string]any{"to": "bob@example.com", "body": "hi"}}
	for range 4 {
		s := h.mustConnect("mailer")
		for i := range 10 {
			p := read
			if i%3 == 0 {
				p = list
			}
			if _, err := s.CallTool(ctx, p); err != nil {
				t.Fatalf("learning: %v", err)
			}
		}
		s.Close()
	}
	if e := h.findEvent(func(e *audit.Event) bool { return e.Type == audit.TypeAlert }); e != nil {
		t.Fatalf("the learning period raised %s: %s", e.Code, e.Detail)
	}
	s := h.mustConnect("mailer")
	_, err := s.CallTool(ctx, send)
	assertDenied(t, err, reason.Contained)
	e := h.findEvent(func(e *audit.Event) bool { return e.Type == audit.TypeAlert && e.Code == reason.AlertAnomaly })
	if e == nil || !strings.Contains(e.Detail, "new_tool") || !strings.Contains(e.Detail, "learned agent:mailer") {
		t.Fatalf("anomaly alert: %+v", e)
	}

	// Saved to the store within the sync interval; edited and restored.
	o := cli(t, h.cfg)
	var snap *detect.Snapshot
	for range 100 {
		if snap, _, err = o.Baselines(ctx); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if snap == nil {
		t.Fatalf("no saved baselines: %v", err)
	}
	var prof *detect.Profile
	for _, p := range snap.Profiles {
		if p.Key == "agent:mailer" {
			prof = p
		}
	}
	if prof == nil || prof.Observations < 40 || prof.Reference == nil || prof.Tools["demo__send_message"] != 0 {
		t.Fatalf("the saved profile: %+v", prof)
	}
	prof.Tools["demo__send_message"] = 20
	doc, _ := json.Marshal(snap)
	if _, err := o.RestoreBaselines(ctx, doc, "soc"); err != nil {
		t.Fatal(err)
	}
	if h.findEvent(func(e *audit.Event) bool { return e.Type == audit.TypeBaseline && strings.Contains(e.Detail, "by soc") }) == nil {
		t.Fatal("the restore was not audited")
	}
	for i := 0; ; i++ {
		if cur := h.g.detector.Snapshot(time.Now()); cur != nil && slices.ContainsFunc(cur.Profiles, func(p *detect.Profile) bool {
			return p.Key == "agent:mailer" && p.Tools["demo__send_message"] > 0
		}) {
			break
		}
		if i == 100 {
			t.Fatal("the running gateway did not load the restored baselines")
		}
		time.Sleep(50 * time.Millisecond)
	}
	s2 := h.mustConnect("mailer")
	if _, err := s2.CallTool(ctx, send); err != nil {
		t.Fatalf("a tool of the restored baseline: %v", err)
	}
	if _, err := o.RestoreBaselines(ctx, []byte(`{"version":1,"profiles":[{"key":"nope"}]}`), "soc"); err == nil {
		t.Error("an invalid snapshot was restored")
	}
}

// Graduated response: require_approval holds a contained session's
// non-read calls for a reviewer (reads pass); a revocation not marked
// automatic waits for one as an approval request, the session terminated
// meanwhile, and is taken once approved.
func TestResponseStepsWaitForReviewers(t *testing.T) {
	h := startGateway(t, demoConfig+`tools:
  - {name: demo__read_file, classification: [read_only]}
detection:
  baselines:
    - {agent: mailer, tools: ["demo__read_file", "demo__list_files"]}
    - {agent: reader, tools: ["demo__*"]}
  response:
    - {alerts: [unexpected_tool], action: require_approval}
    - {alerts: [denial_burst], action: revoke_agent}
`, map[string]string{"policy.cedar": demoPolicy})
	defer h.stop()
	ctx := context.Background()
	o := cli(t, h.cfg)
	read := &mcp.CallToolParams{Name: "demo__read_file", Arguments: map[string]any{"path": "notes/meeting.txt"}}
	send := func(to string) *mcp.CallToolParams {
		return &mcp.CallToolParams{Name: "demo__send_message", Arguments: map[string]any{"to": to, "body": "hi"}}
	}
	pending := func(tool string) *approval.Request {
		for range 200 {
			rs, _ := o.ListApprovals(ctx, "pending")
			for _, r := range rs {
				if r.Tool == tool {
					return r
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatalf("no pending approval for %s", tool)
		return nil
	}

	s := h.mustConnect("mailer")
	_, err := s.CallTool(ctx, send("bob@example.com")) // the deviating call: stopped at relay
	assertDenied(t, err, reason.Contained)
	if _, err := s.CallTool(ctx, read); err != nil {
		t.Fatalf("a read in a session held to approval: %v", err)
	}
	errc := make(chan error, 1)
	go func() { _, err := s.CallTool(ctx, send("carol@example.com")); errc <- err }()
	r := pending("demo__send_message")
	if !slices.ContainsFunc(r.Reasons, func(s string) bool { return strings.Contains(s, "contained by the response to an alert") }) {
		t.Errorf("the held call's reasons: %v", r.Reasons)
	}
	if _, err := o.DecideApproval(ctx, r.ID, approval.Approved, "soc", "once", ""); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("an approved call of a session held to approval: %v", err)
	}

	// Five denials in a minute: revoke_agent waits for a reviewer.
	s2 := h.mustConnect("reader")
	for range 5 {
		s2.CallTool(ctx, send("x@example.com"))
	}
	if h.findEvent(func(e *audit.Event) bool { return e.Type == audit.TypeResponse && e.Code == reason.ResponseAwaiting }) == nil {
		t.Fatal("no awaiting_approval response")
	}
	_, err = s2.CallTool(ctx, read)
	assertDenied(t, err, reason.Contained) // terminated meanwhile
	s3 := h.mustConnect("reader")
	if _, err := s3.CallTool(ctx, read); err != nil {
		t.Fatalf("another session before the revocation is approved: %v", err)
	}
	step := pending("portcullis.response/revoke_agent")
	if _, err := o.DecideApproval(ctx, step.ID, approval.Approved, "soc", "once", ""); err != nil {
		t.Fatal(err)
	}
	var done *audit.Event
	for range 200 {
		if done = h.findEvent(func(e *audit.Event) bool { return e.Type == audit.TypeResponse && e.Code == reason.ResponseRevokeAgent }); done != nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if done == nil || !strings.Contains(done.Detail, "approved by soc") {
		t.Fatalf("the approved revocation: %+v", done)
	}
	// Every session of the agent is refused at once, and its credential
	// is revoked (refused before the MCP layer, once the revocation list
	// is refreshed).
	if _, err = s3.CallTool(ctx, read); err == nil || !strings.Contains(err.Error(), "Unauthorized") && !strings.Contains(err.Error(), "contained") {
		t.Fatalf("after the revocation: %v", err)
	}

	// Every step is undone by an operator: the revocation lifted, the
	// agent's containment released (through the store, as the CLI does).
	if err := o.Unrevoke(ctx, store.RevokeAgent, "reader", "soc", "false positive"); err != nil {
		t.Fatal(err)
	}
	if err := o.Unrevoke(ctx, store.RevokeAgent, "reader", "soc", "again"); err == nil {
		t.Error("lifted a revocation that is not there")
	}
	if err := o.ReleaseContainment(ctx, "", "reader", "soc"); err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		s4, err := h.connect(h.token("reader", time.Minute))
		if err == nil {
			_, err = s4.CallTool(ctx, read)
			s4.Close()
		}
		if err == nil {
			break
		}
		if i == 100 {
			t.Fatalf("after the undo: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if h.findEvent(func(e *audit.Event) bool { return e.Type == audit.TypeToken && e.Code == reason.RevocationLifted }) == nil {
		t.Error("the lifted revocation is not audited")
	}
}

// A revocation waiting for a reviewer survives a restart: the agent is
// held to approval again at start, a second alert does not pile up a
// second request, and the approval given after the restart takes the step.
func TestPendingRevocationSurvivesRestart(t *testing.T) {
	conf := demoConfig + `detection:
  baselines:
    - {agent: reader, tools: ["demo__*"]}
  response:
    - {alerts: [denial_burst], action: revoke_agent}
`
	h := startGateway(t, conf, map[string]string{"policy.cedar": demoPolicy})
	ctx := context.Background()
	send := &mcp.CallToolParams{Name: "demo__send_message", Arguments: map[string]any{"to": "x@example.com", "body": "hi"}}
	burst := func(h *harness) {
		s := h.mustConnect("reader")
		for range 5 {
			s.CallTool(ctx, send)
		}
	}
	burst(h)
	burst(h) // a second session's burst: the same step, no second request
	o := cli(t, h.cfg)
	var pending []*approval.Request
	for range 100 {
		rs, _ := o.ListApprovals(ctx, "pending")
		pending = pending[:0]
		for _, r := range rs {
			if r.Tool == "portcullis.response/revoke_agent" {
				pending = append(pending, r)
			}
		}
		if len(pending) > 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(pending) != 1 {
		t.Fatalf("pending revocations: %d", len(pending))
	}
	h.stop()

	g, err := New(h.cfg, Options{Log: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Listen(); err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- g.Run(rctx) }()
	defer func() { stop(); <-done }()
	if err := g.proxy.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	if got := g.proxy.Containment("any-session", "reader"); got != mcpproxy.RequireApproval {
		t.Fatalf("after the restart the agent is held at %v, want require_approval", got)
	}
	if _, err := o.DecideApproval(ctx, pending[0].ID, approval.Approved, "soc", "once", ""); err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		revs, _ := g.store.Revocations(ctx)
		if revs[store.RevokeAgent]["reader"] {
			break
		}
		if i == 200 {
			t.Fatal("the approval given after the restart did not revoke the agent")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// quarantine_upstream (automatic here) withholds every tool of the
// alert's upstream from every agent, durably, through the tool registry;
// `tools approve` undoes it. notify sends the alert and step to the
// webhook.
func TestQuarantineUpstreamAndNotify(t *testing.T) {
	got := make(chan map[string]any, 4)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m map[string]any
		json.NewDecoder(r.Body).Decode(&m)
		got <- m
	}))
	defer hook.Close()
	h := startGateway(t, demoConfig+`detection:
  baselines:
    - {agent: mailer, tools: ["demo__read_file"]}
  notify: {url: "`+hook.URL+`"}
  response:
    - {alerts: [unexpected_tool], action: quarantine_upstream, automatic: true, notify: true}
`, map[string]string{"policy.cedar": demoPolicy})
	defer h.stop()
	ctx := context.Background()
	read := &mcp.CallToolParams{Name: "demo__read_file", Arguments: map[string]any{"path": "notes/meeting.txt"}}
	s := h.mustConnect("mailer")
	_, err := s.CallTool(ctx, &mcp.CallToolParams{Name: "demo__list_files", Arguments: map[string]any{}})
	assertDenied(t, err, reason.Contained)
	select {
	case m := <-got:
		if m["class"] != "unexpected_tool" || m["step"] != "quarantine_upstream" || m["upstream"] != "demo" || m["agent"] != "mailer" {
			t.Errorf("notification: %v", m)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no notification")
	}
	// Another agent no longer sees the upstream's tools.
	other := h.mustConnect("reader")
	for i := 0; ; i++ {
		if _, err := other.CallTool(ctx, read); err != nil {
			break
		}
		if i == 100 {
			t.Fatal("the quarantined upstream still serves")
		}
		time.Sleep(50 * time.Millisecond)
	}
	o := cli(t, h.cfg)
	if _, err := o.DecidePin(ctx, "demo", "read_file", "approved", "soc"); err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		s := h.mustConnect("reader")
		if _, err := s.CallTool(ctx, read); err == nil {
			break
		}
		if i == 100 {
			t.Fatal("approving the tool did not undo the quarantine")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
