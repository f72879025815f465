package posture

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/portcullis-dev/portcullis/internal/approval"
	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/reason"
	"github.com/portcullis-dev/portcullis/internal/store"
)

// TestOutcomeMetrics computes the metrics from a seeded log: counts,
// ratios, coverage, triage, dwell time, detection speed and approval
// latency, with events older than the window left out.
func TestOutcomeMetrics(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(filepath.Join(t.TempDir(), "p.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	at := func(ago time.Duration) time.Time { return now.Add(-ago) }
	dec := func(ago time.Duration, agent, req string, o audit.Outcome, code reason.Code) *audit.Event {
		e := audit.New(audit.TypeDecision, o, code, at(ago), audit.Subject{Agent: agent, RequestID: req})
		e.Action, e.PolicyVersion = "call_tool", "sha256:x"
		if o == audit.OutcomeAllow {
			e.Policies = []string{"p1"}
		}
		return e
	}
	events := []*audit.Event{
		dec(30*24*time.Hour, "old", "r0", audit.OutcomeDeny, reason.NoPermit), // outside the window
		dec(3*time.Hour, "alice", "r1", audit.OutcomeAllow, ""),
		dec(2*time.Hour, "alice", "r2", audit.OutcomeDeny, reason.NoPermit),
		dec(2*time.Hour, "alice", "r3", audit.OutcomeDeny, reason.ApprovalRequired),
		dec(26*time.Hour, "alice", "", audit.OutcomeDeny, reason.UnknownTarget),
		audit.New(audit.TypeAuthn, audit.OutcomeDeny, reason.Code("unknown_agent"), at(time.Hour), audit.Subject{Agent: "mallory"}),
	}
	al := audit.New(audit.TypeAlert, audit.OutcomeInfo, reason.AlertDenialBurst, at(2*time.Hour-3*time.Second), audit.Subject{Agent: "alice", RequestID: "r2"})
	al.Alert = "al-1"
	tr := audit.New(audit.TypeTriage, audit.OutcomeInfo, "suspicious", at(2*time.Hour-2*time.Second), audit.Subject{Agent: "alice"})
	tr.Alert = "al-1"
	ack := audit.New(audit.TypeAlertState, audit.OutcomeInfo, reason.Code("acknowledged"), at(2*time.Hour-3*time.Second-10*time.Minute), audit.Subject{})
	ack.Alert = "al-1"
	ack.Time = at(2*time.Hour - 3*time.Second).Add(10 * time.Minute)
	al2 := audit.New(audit.TypeAlert, audit.OutcomeInfo, reason.AlertDrift, at(time.Hour), audit.Subject{})
	al2.Alert = "al-2"
	events = append(events, al, tr, ack, al2)
	for _, e := range events {
		if err := audit.WriteNow(ctx, st, e); err != nil {
			t.Fatal(err)
		}
	}
	r := &approval.Request{ID: "ap1", Agent: "alice", Tool: "t", Created: at(time.Hour), Expires: at(0), State: approval.Pending, ArgsSHA256: "x"}
	if err := st.AddApproval(ctx, r); err != nil {
		t.Fatal(err)
	}
	if err := st.DecideApproval(ctx, "ap1", approval.Approved, "bob", approval.ScopeOnce, "", at(time.Hour-90*time.Second)); err != nil {
		t.Fatal(err)
	}
	cfg := &config.Config{Agents: []config.Agent{{Name: "alice"}, {Name: "bob"}}}
	m, err := gatherMetrics(ctx, st, cfg, now, DefaultWindow)
	if err != nil {
		t.Fatal(err)
	}
	if m.Decisions != 4 || m.Allowed != 1 || m.Denied != 2 || m.Held != 1 || m.UnknownTargets != 1 || m.Explained != 4 || m.WithRequestID != 3 {
		t.Errorf("decisions %+v", m)
	}
	if !slices.Equal(m.ActiveAgents, []string{"alice"}) || !slices.Equal(m.IdleAgents, []string{"bob"}) || !slices.Equal(m.Unenrolled, []string{"mallory"}) {
		t.Errorf("coverage: active %v idle %v unenrolled %v", m.ActiveAgents, m.IdleAgents, m.Unenrolled)
	}
	if m.Alerts != 2 || m.Triaged != 1 || m.Drift != 1 {
		t.Errorf("alerts %d triaged %d drift %d", m.Alerts, m.Triaged, m.Drift)
	}
	if m.DwellTime.N != 1 || m.DwellTime.P50 != 600 {
		t.Errorf("dwell %+v", m.DwellTime)
	}
	if m.DetectionSpeed.N != 1 || m.DetectionSpeed.P50 != 3 {
		t.Errorf("detection speed %+v", m.DetectionSpeed)
	}
	if m.ApprovalLatency.N != 1 || m.ApprovalLatency.P50 != 90 {
		t.Errorf("approval latency %+v", m.ApprovalLatency)
	}
	if len(m.Trend) != 2 {
		t.Errorf("trend %+v", m.Trend)
	}
	rep := &Report{Metrics: m, Capabilities: []CapabilityResult{{Capability: Capabilities[0], Tier: Enterprise}}}
	tiers, out := rep.Gauges()
	if tiers["identity_verification"] != 2 || out["denied_ratio"] != 0.5 || out["triaged_ratio"] != 0.5 || out["approval_latency_p50_seconds"] != 90 || out["unenrolled_agents"] != 1 {
		t.Errorf("gauges %v %v", tiers, out)
	}
}
