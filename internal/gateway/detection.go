package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/portcullis-dev/portcullis/internal/approval"
	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/detect"
	"github.com/portcullis-dev/portcullis/internal/mcpproxy"
	"github.com/portcullis-dev/portcullis/internal/ops"
	"github.com/portcullis-dev/portcullis/internal/reason"
	"github.com/portcullis-dev/portcullis/internal/screen"
	"github.com/portcullis-dev/portcullis/internal/store"
	"github.com/portcullis-dev/portcullis/internal/toolreg"
)

// newDetector builds the detector of the configured baselines (validated
// with the configuration).
func newDetector(d config.Detection) *detect.Detector {
	var bs []detect.Baseline
	for i, b := range d.Baselines {
		db := detect.Baseline{Agent: b.Agent, Role: b.Role, Tools: b.Tools, DelegatesTo: b.DelegatesTo, CallsPerMinute: b.CallsPerMinute,
			Location: time.UTC, Source: fmt.Sprintf("detection.baselines[%d]", i)}
		if b.Timezone != "" {
			if loc, err := time.LoadLocation(b.Timezone); err == nil {
				db.Location = loc
			}
		}
		if b.ActiveHours != "" {
			db.ActiveFrom, db.ActiveTo, _ = config.ParseHours(b.ActiveHours)
		}
		bs = append(bs, db)
	}
	det := detect.New(bs)
	if len(d.Baselines) > 0 || d.Learning != nil || len(d.Response) > 0 {
		det.WatchContent()
	}
	if l := d.Learning; l != nil {
		det.Learn(detect.LearnOptions{MinObservations: l.MinObservations, Sensitivity: l.Sensitivity, Threshold: l.Threshold,
			Window: l.Window.D(), DriftThreshold: l.DriftThreshold})
	}
	return det
}

// syncBaselines keeps the learned baselines in the store: loaded at start,
// saved every sync interval and at stop, and replaced when an operator
// restored a snapshot (`portcullis baseline restore` bumps the stored
// generation; the gateway's next save notices and loads it).
func (g *Gateway) syncBaselines(ctx context.Context) error {
	every := g.cfg.Detection.Learning.SyncInterval.D()
	if every == 0 {
		every = 10 * time.Second
	}
	g.loadBaselines(ctx)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			g.saveBaselines(sctx)
			cancel()
			return nil
		case <-t.C:
			g.saveBaselines(ctx)
		}
	}
}

func (g *Gateway) saveBaselines(ctx context.Context) {
	body, err := json.Marshal(g.detector.Snapshot(time.Now()))
	if err != nil {
		g.log.Error("learned baselines not saved", "err", err)
		return
	}
	ok, err := g.store.SaveBaselines(ctx, g.baselineGen, body)
	switch {
	case err != nil:
		g.log.Error("learned baselines not saved", "err", err)
	case !ok:
		g.loadBaselines(ctx) // restored by an operator since
	}
}

func (g *Gateway) loadBaselines(ctx context.Context) {
	gen, body, _, err := g.store.Baselines(ctx)
	if errors.Is(err, store.ErrNotFound) {
		return
	}
	if err != nil {
		g.log.Error("learned baselines not loaded; learning afresh", "err", err)
		return
	}
	g.baselineGen = gen // an unreadable document is overwritten by the next save
	s, err := detect.ParseSnapshot(body)
	if err == nil {
		err = g.detector.Restore(s)
	}
	if err != nil {
		g.log.Error("learned baselines not loaded; learning afresh", "err", err)
		return
	}
	g.log.Info("learned baselines loaded", "generation", gen, "profiles", len(s.Profiles), "taken", s.Taken)
}

// detecting is the proxy's recorder: every decision it records is also
// shown to the detector, whose alerts are audited and answered.
type detecting struct {
	mcpproxy.Recorder
	g *Gateway
}

func (d detecting) Record(ctx context.Context, e *audit.Event) error {
	err := d.Recorder.Record(ctx, e)
	if err == nil {
		d.g.observe(e)
	}
	return err
}

// Submit is how screening events arrive (queued, off the call's path).
func (d detecting) Submit(e *audit.Event) error {
	err := d.Recorder.Submit(e)
	if e.Type == audit.TypeScreening {
		d.g.observe(e) // even when the queue is full: load does not blind detection
	}
	return err
}

func (d detecting) Commit(ctx context.Context, e *audit.Event) (*audit.Receipt, error) {
	r, err := d.Recorder.Commit(ctx, e)
	if err == nil {
		d.g.observe(e)
	}
	return r, err
}

// observe shows a recorded decision to the detector and answers its
// alerts: containment takes effect before the session's next message;
// revocation is written after.
func (g *Gateway) observe(e *audit.Event) {
	if g.detector.Empty() {
		return
	}
	var alerts []detect.Alert
	switch e.Type {
	case audit.TypeDecision:
		// The roles the decision was made with (an identity provider's
		// mapped roles included), else the configured ones.
		var roles []string
		if e.Input != nil && len(e.Input.Roles) > 0 {
			roles = e.Input.Roles
		} else if a, ok := g.cfg.Agent(e.Agent); ok {
			roles = a.Roles
		}
		alerts = g.detector.Observe(e, roles)
	case audit.TypeScreening:
		if dir, cats := screeningCategories(e.Detail); dir != screen.DirArguments {
			alerts = g.detector.ObserveFinding(e, cats)
		}
	}
	for _, al := range alerts {
		g.raise(al, e.Time)
	}
}

// raise audits alert al (raised on what happened at observed), answers
// it and has it triaged.
func (g *Gateway) raise(al detect.Alert, observed time.Time) {
	ev := audit.New(audit.TypeAlert, audit.OutcomeInfo, reason.Code(al.Class), al.Time,
		audit.Subject{Agent: al.Agent, User: al.User, Task: al.Task, Actors: al.Actors, SessionID: al.Session, RequestID: al.RequestID})
	ev.Target, ev.Upstream, ev.Severity, ev.Techniques, ev.Alert = al.Target, al.Upstream, al.Severity, al.Techniques, al.ID
	ev.Detail = al.Evidence + " (baseline " + al.Baseline + ")"
	g.metrics.Alert(al.Class, al.Severity)
	g.metrics.Detected(al.Class, time.Since(observed))
	g.log.Warn("alert", "id", al.ID, "class", al.Class, "severity", al.Severity, "agent", al.Agent, "session", al.Session, "upstream", al.Upstream, "evidence", al.Evidence)
	g.respond(al, ev)
	go g.triage(al)
}

// screeningCategories reads a screening event's detail ("result:
// secret/aws-key:redact×1 prompt_injection/...") as its direction and the
// categories found.
func screeningCategories(detail string) (dir string, cats []string) {
	dir, summary, _ := strings.Cut(detail, ": ")
	for _, f := range strings.Fields(summary) {
		if c, _, ok := strings.Cut(f, "/"); ok && !slices.Contains(cats, c) {
			cats = append(cats, c)
		}
	}
	return dir, cats
}

// recordNow writes an alert or response event durably (not through the
// queue, which drops when full): a session is never contained without a
// record of why. It costs the deviating call only.
func (g *Gateway) recordNow(e *audit.Event) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := g.recorder.Record(ctx, e); err != nil {
		g.log.Error("audit event lost", "type", e.Type, "alert", e.Alert, "err", err)
	}
}

// triage is every alert's first pass, off the hot path: it gathers the
// session's recent record and the agent's other alerts from the log and
// writes the disposition as a triage event.
func (g *Gateway) triage(al detect.Alert) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var ev detect.Evidence
	tools := map[string]bool{}
	if al.Session != "" {
		rows, err := g.store.Events(ctx, store.EventQuery{SessionID: al.Session, Types: []string{string(audit.TypeDecision), string(audit.TypeSessionLabel), string(audit.TypeScreening)}, Limit: 200, Last: true})
		if err != nil {
			g.log.Error("triage: the session's record unreadable", "alert", al.ID, "err", err)
		}
		for _, r := range rows {
			e, err := audit.Decode(r)
			if err != nil {
				continue
			}
			switch e.Type {
			case audit.TypeDecision:
				ev.Decisions++
				if e.Outcome == audit.OutcomeDeny {
					ev.Denied++
				}
				if e.Action == "call_tool" {
					tools[e.Target] = true
				}
			case audit.TypeSessionLabel:
				ev.Labels = append(ev.Labels, e.Labels...)
			case audit.TypeScreening:
				_, cats := screeningCategories(e.Detail)
				for _, cat := range cats {
					if !slices.Contains(ev.Findings, cat) {
						ev.Findings = append(ev.Findings, cat)
					}
				}
			}
		}
	}
	for t := range tools {
		ev.Tools = append(ev.Tools, t)
	}
	slices.Sort(ev.Tools)
	var rows []store.EventRow
	if al.Agent != "" {
		rows, _ = g.store.Events(ctx, store.EventQuery{Agent: al.Agent, Types: []string{string(audit.TypeAlert)}, Limit: 100, Last: true})
	}
	for _, r := range rows {
		if e, err := audit.Decode(r); err == nil && e.Alert != al.ID && al.Time.Sub(e.Time) < time.Hour {
			ev.RelatedAlerts = append(ev.RelatedAlerts, string(e.Code))
		}
	}
	rep := detect.Triage(al, ev)
	detail := fmt.Sprintf("%s. Evidence: %d decisions (%d denied), tools %v, labels %v, findings %v, related alerts %v",
		rep.Summary(), ev.Decisions, ev.Denied, ev.Tools, ev.Labels, ev.Findings, ev.RelatedAlerts)
	backend := "deterministic"
	// The model-backed pass, when configured, for every agent but the
	// triage agent itself (its own alerts would feed it).
	if tc := g.cfg.Detection.Triage; tc != nil && al.Agent != tc.Agent {
		timeout := tc.Timeout.D()
		if timeout == 0 {
			timeout = time.Minute
		}
		mctx, mcancel := context.WithTimeout(context.Background(), timeout)
		res, err := g.modelTriage(mctx, al, rep)
		mcancel()
		if err != nil {
			g.log.Warn("model triage failed; the deterministic report stands", "alert", al.ID, "err", err)
			detail += ". Model triage failed: " + err.Error()
		} else {
			// The model's verdict is recorded beside the rules'; the
			// event's verdict is the more severe of the two (a fooled
			// model does not clear an alert the rules flag).
			backend = "model"
			detail = fmt.Sprintf("model (%d turns, queries %v): %s. Deterministic first pass: %s", res.Turns, res.Queries, res.Summary(), detail)
			if verdictRank(res.Verdict) > verdictRank(rep.Verdict) {
				rep = res.Report
			}
		}
	}
	te := audit.New(audit.TypeTriage, audit.OutcomeInfo, reason.Code(rep.Verdict), time.Now(),
		audit.Subject{Agent: al.Agent, User: al.User, Task: al.Task, SessionID: al.Session, RequestID: al.RequestID})
	te.Alert, te.Severity = al.ID, al.Severity
	te.Detail = detail
	g.submit(te)
	g.metrics.Triaged(rep.Verdict, backend, time.Since(al.Time))
}

// release lifts a containment (an operator's undo), audited in their name.
func (g *Gateway) release(session, agent, by string) {
	if session != "" {
		g.uncontain(session, "")
	} else {
		g.uncontain("", agent)
		g.escMu.Lock()
		delete(g.contained, agent) // or the next containment re-escalates at once
		g.escMu.Unlock()
	}
	ev := audit.New(audit.TypeResponse, audit.OutcomeInfo, reason.ResponseReleased, time.Now(), audit.Subject{Agent: agent, SessionID: session})
	ev.Detail = "containment lifted by " + by
	g.recordNow(ev)
}

// watchReleases applies the containment releases operators record with
// `portcullis alerts release` (the admin API's release acts at once).
func (g *Gateway) watchReleases(ctx context.Context) error {
	last, err := g.store.LastRelease(ctx)
	if err != nil {
		return err
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		rs, err := g.store.Releases(ctx, last)
		if err != nil {
			g.log.Error("containment releases unreadable", "err", err)
			continue
		}
		for _, r := range rs {
			last = r.ID
			if r.Session != "" {
				g.proxy.Release(r.Session, "")
			} else {
				g.proxy.Release("", r.Agent)
				g.escMu.Lock()
				delete(g.contained, r.Agent)
				g.escMu.Unlock()
			}
			g.log.Info("containment released", "session", r.Session, "agent", r.Agent, "by", r.By)
		}
		if len(rs) > 0 {
			g.reloadContainments(ctx) // the release lifted the stored one too
		}
	}
}

// escalation: an agent whose sessions keep being contained is held back
// whole: a compromised agent gains nothing by opening new sessions.
const (
	escalateAfter  = 3 // sessions contained ...
	escalateWithin = 10 * time.Minute
)

// escalate counts al's session among the agent's contained ones and
// terminates every session of the agent when there are escalateAfter
// within escalateWithin.
func (g *Gateway) escalate(al detect.Alert) {
	g.escMu.Lock()
	if g.contained == nil {
		g.contained = map[string]map[string]time.Time{}
	}
	sessions := g.contained[al.Agent]
	if sessions == nil {
		sessions = map[string]time.Time{}
		g.contained[al.Agent] = sessions
	}
	sessions[al.Session] = al.Time
	maps.DeleteFunc(sessions, func(_ string, t time.Time) bool { return t.Before(al.Time.Add(-escalateWithin)) })
	n := len(sessions)
	g.escMu.Unlock()
	if g.fleet() && n < escalateAfter {
		// Its sessions contained by the other gateways count too.
		n = max(n, g.containedSessions(al.Agent, al.Time.Add(-escalateWithin)))
	}
	if n < escalateAfter {
		return
	}
	g.contain("", al.Agent, mcpproxy.Terminated)
	ev := audit.New(audit.TypeResponse, audit.OutcomeInfo, reason.ResponseTerminate, time.Now(), audit.Subject{Agent: al.Agent, User: al.User})
	ev.Alert = al.ID
	ev.Detail = fmt.Sprintf("every session of the agent: %d of its sessions contained within %s", n, escalateWithin)
	g.recordNow(ev)
}

// actions orders the response actions by strength (the configuration
// lists them weakest first).
var actions = config.ResponseActions

// respond takes the strongest step the playbook gives alert al (whose
// event is alertEv). Containment comes first, in memory, so that the
// session's next message is refused whatever the disk does; then the
// record of why: the alert committed and the step recorded durably (one
// sync covers both). A revocation not marked automatic waits for a
// reviewer (the approval workflow) while the session is terminated.
func (g *Gateway) respond(al detect.Alert, alertEv *audit.Event) {
	step, automatic, notify := "", false, false
	for _, r := range g.cfg.Detection.Response {
		if len(r.Alerts) > 0 && !slices.Contains(r.Alerts, al.Class) {
			continue
		}
		if r.MinSeverity != "" && detect.SeverityRank(al.Severity) < detect.SeverityRank(r.MinSeverity) {
			continue
		}
		notify = notify || r.Notify
		if i, j := slices.Index(actions, r.Action), slices.Index(actions, step); i > j || i == j && r.Automatic {
			step, automatic = r.Action, r.Automatic
		}
	}
	if step == "" || al.Agent == "" { // a role's drift, an upstream's egress: no one agent's to contain
		g.recordNow(alertEv)
		if step == "quarantine_upstream" && automatic && al.Upstream != "" {
			// A tool server's own misbehaviour: its tools are withheld.
			ev := audit.New(audit.TypeResponse, audit.OutcomeInfo, reason.ResponseQuarantineUpstream, time.Now(), audit.Subject{})
			ev.Alert, ev.Upstream, ev.Detail = al.ID, al.Upstream, "for the "+al.Class+" alert: "+al.Evidence
			g.recordNow(ev)
			g.takeStep(al, step, "portcullis-response")
			g.metrics.Contained(step, time.Since(al.Time))
		}
		if notify && step != "" {
			go g.notify(al, "flag")
		}
		return
	}
	switch {
	case step == "revoke_task" && al.Task == "", step == "quarantine_upstream" && al.Upstream == "":
		g.log.Warn("response: the step has nothing to act on; the session is terminated instead", "alert", al.ID, "step", step)
		step = "terminate_session"
	}
	if al.Session == "" && !config.HighImpact(step) {
		g.log.Warn("response: an alert without a session; not contained", "alert", al.ID, "step", step)
		step = "flag"
	}
	switch step {
	case "require_approval":
		g.contain(al.Session, al.Agent, mcpproxy.RequireApproval)
	case "read_only":
		g.contain(al.Session, al.Agent, mcpproxy.ReadOnly)
	case "terminate_session":
		g.contain(al.Session, al.Agent, mcpproxy.Terminated)
	case "revoke_task", "revoke_agent", "quarantine_upstream":
		if al.Session != "" {
			g.contain(al.Session, al.Agent, mcpproxy.Terminated)
		}
		if step == "revoke_agent" && automatic {
			g.contain("", al.Agent, mcpproxy.Terminated)
		}
	}
	taken := time.Since(al.Time)
	g.commitNow(alertEv)
	who := audit.Subject{Agent: al.Agent, User: al.User, Task: al.Task, SessionID: al.Session, RequestID: al.RequestID}
	ev := audit.New(audit.TypeResponse, audit.OutcomeInfo, reason.Code(step), time.Now(), who)
	ev.Alert, ev.Upstream = al.ID, al.Upstream
	ev.Detail = "for the " + al.Class + " alert: " + al.Evidence
	if notify {
		defer func() { go g.notify(al, string(ev.Code)) }()
	}
	switch {
	case step == "require_approval" || step == "read_only" || step == "terminate_session":
		g.recordNow(ev)
		g.escalate(al)
	case config.HighImpact(step) && !automatic:
		// While a reviewer decides, every session of the agent has its
		// non-read calls reviewed too.
		g.contain("", al.Agent, mcpproxy.RequireApproval)
		ev.Code = reason.ResponseAwaiting
		ev.Detail = step + " waits for a reviewer; the session is terminated and the agent's other sessions held to approval meanwhile. " + ev.Detail
		g.recordNow(ev)
		g.escalate(al)
		g.metrics.Contained("terminate_session", taken)
		if g.pendingStep(al.Agent, step, true) {
			go g.awaitStep(al, step, nil)
		}
		return
	case config.HighImpact(step):
		g.recordNow(ev)
		g.takeStep(al, step, "portcullis-response")
	default:
		g.recordNow(ev)
	}
	g.metrics.Contained(step, taken)
}

// takeStep takes a high-impact step (approved, or automatic).
func (g *Gateway) takeStep(al detect.Alert, step, by string) {
	if step == "quarantine_upstream" {
		g.quarantineUpstream(al, by)
		return
	}
	g.revoke(al, step, by)
}

// quarantineUpstream withholds every tool of the alert's upstream from
// every agent: their pinned definitions go back to quarantine (the tool
// registry serves approved definitions only), durable and audited like a
// supply-chain quarantine, and undone like one (`portcullis tools
// approve`).
func (g *Gateway) quarantineUpstream(al detect.Alert, by string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pins, err := g.store.Pins(ctx, al.Upstream)
	if err != nil {
		g.log.Error("response: upstream not quarantined", "upstream", al.Upstream, "err", err)
		return
	}
	n := 0
	for _, p := range pins {
		if p.State != toolreg.Approved {
			continue
		}
		e := audit.New(audit.TypeSupplyChain, audit.OutcomeInfo, reason.ToolQuarantined, time.Now(), audit.Subject{Agent: al.Agent})
		e.Upstream, e.Target, e.Alert = al.Upstream, p.Name, al.ID
		e.Detail = fmt.Sprintf("%s quarantined by %s: response to the %s alert %s", p.Digest, by, al.Class, al.ID)
		g.recordNow(e)
		if err := g.store.SetPinState(ctx, al.Upstream, p.Name, p.Digest, toolreg.Quarantined, by); err != nil {
			g.log.Error("response: tool not quarantined", "upstream", al.Upstream, "tool", p.Name, "err", err)
			continue
		}
		n++
	}
	g.proxy.RefreshAll()
	// Its running servers keep no way out either.
	cut := g.cutEgress(al.Upstream)
	g.log.Warn("response: upstream quarantined", "upstream", al.Upstream, "tools", n, "egress_cut", cut, "by", by)
}

// notify sends an alert and the step taken to detection.notify.
func (g *Gateway) notify(al detect.Alert, step string) {
	w := g.cfg.Detection.Notify
	if w == nil {
		return
	}
	h, err := headers(g.cfg, w.Headers, g.openSecret)
	if err != nil {
		g.log.Error("response: notification headers", "err", err)
		return
	}
	body, _ := json.Marshal(map[string]any{
		"alert_id": al.ID, "class": al.Class, "severity": al.Severity, "time": al.Time, "agent": al.Agent, "user": al.User,
		"task": al.Task, "session_id": al.Session, "request_id": al.RequestID, "act_chain": al.Actors, "target": al.Target,
		"upstream": al.Upstream, "techniques": al.Techniques, "evidence": al.Evidence, "baseline": al.Baseline, "step": step,
		"show": "portcullis alerts show " + al.ID,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := g.out.Post(ctx, w.URL, h, "application/json", body); err != nil {
		g.log.Error("response: notification failed", "alert", al.ID, "err", err)
	}
}

// commitNow commits an event to the log without waiting for the disk (the
// durable write that follows covers it).
func (g *Gateway) commitNow(e *audit.Event) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := g.recorder.Commit(ctx, e); err != nil {
		g.log.Error("audit event lost", "type", e.Type, "alert", e.Alert, "err", err)
	}
}

// revoke takes a revocation step: the task tree, or the agent (its
// sessions refused at once, its credentials revoked in the store).
func (g *Gateway) revoke(al detect.Alert, step, by string) {
	kind, value := store.RevokeTask, al.Task
	if step == "revoke_agent" {
		kind, value = store.RevokeAgent, al.Agent
		g.contain("", al.Agent, mcpproxy.Terminated)
	}
	why := "alert " + al.Class + ": " + al.Evidence
	e, err := ops.RevocationEvent(kind, value, by, why)
	if err != nil {
		g.log.Error("response: not revoked", "kind", kind, "value", value, "err", err)
		return
	}
	// Through the gateway's own recorder: an append beside it would
	// move the log under its feet.
	g.recordNow(e)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := g.store.Revoke(ctx, kind, value, by, why); err != nil {
		g.log.Error("response: not revoked", "kind", kind, "value", value, "err", err)
		return
	}
	if err := g.revs.Refresh(ctx, g.store); err != nil { // at once, not at the next refresh
		g.log.Error("response: revocations not refreshed", "err", err)
	}
}

// pendingStep marks (on) or clears a revocation waiting for a reviewer; it
// reports false when one was waiting already (no second request).
func (g *Gateway) pendingStep(agent, step string, on bool) bool {
	g.escMu.Lock()
	defer g.escMu.Unlock()
	if g.awaiting == nil {
		g.awaiting = map[string]bool{}
	}
	k := agent + "\x00" + step
	if on && g.awaiting[k] {
		return false
	}
	if on {
		g.awaiting[k] = true
	} else {
		delete(g.awaiting, k)
	}
	return true
}

// stepTool names a response step held for a reviewer in the approval
// queue.
const stepTool = "portcullis.response/"

// awaitStep holds a revocation for a reviewer, as an approval request
// (listed by `portcullis approvals list`, decided like any; held is one
// stored before a restart), and takes it once approved.
func (g *Gateway) awaitStep(al detect.Alert, step string, held *approval.Request) {
	defer g.pendingStep(al.Agent, step, false)
	r := held
	if r == nil {
		args, _ := json.Marshal(map[string]string{"alert_id": al.ID, "upstream": al.Upstream})
		r = &approval.Request{Agent: al.Agent, User: al.User, Task: al.Task, SessionID: al.Session, RequestID: al.RequestID,
			Tool: stepTool + step, Arguments: args, Reasons: []string{"response to the " + al.Severity + " " + al.Class + " alert " + al.ID + ": " + al.Evidence}}
		if err := g.approvals.NewRequest(r); err != nil {
			g.log.Error("response: approval request", "alert", al.ID, "err", err)
			return
		}
	}
	ctx, cancel := context.WithTimeout(g.bgCtx, time.Until(r.Expires)+time.Minute)
	defer cancel()
	if held == nil {
		if err := g.approvals.Add(ctx, r); err != nil {
			g.log.Error("response: approval request", "alert", al.ID, "err", err)
			return
		}
	}
	// Waited for without voiding it when the gateway stops: the next
	// start resumes it.
	final, err := g.approvals.Wait(ctx, r.ID)
	if g.bgCtx.Err() != nil {
		return // stopping: resumed at the next start
	}
	ev := audit.New(audit.TypeResponse, audit.OutcomeInfo, reason.ResponseNotTaken, time.Now(),
		audit.Subject{Agent: al.Agent, User: al.User, Task: al.Task, SessionID: al.Session, RequestID: al.RequestID})
	ev.Alert = al.ID
	switch {
	case err != nil:
		ev.Detail = step + " not taken: " + err.Error()
	case final.State == approval.Consumed:
		g.takeStep(al, step, final.DecidedBy)
		ev.Code, ev.Detail = reason.Code(step), step+" approved by "+final.DecidedBy+" ("+r.ID+")"
	default:
		ev.Detail = fmt.Sprintf("%s not taken: %s by %s (%s)", step, final.State, final.DecidedBy, r.ID)
		if g.proxy.Containment("", al.Agent) == mcpproxy.RequireApproval {
			g.uncontain("", al.Agent) // the hold that waited for this decision
		}
	}
	g.recordNow(ev)
}

// resumeSteps picks up the revocations that were waiting for a reviewer
// when the gateway stopped: the agent is held to approval again, and an
// approval made since (or later) takes the step.
func (g *Gateway) resumeSteps(ctx context.Context) error {
	rs, err := g.store.Approvals(ctx, approval.Pending)
	if err != nil {
		return err
	}
	for _, r := range rs {
		step, ok := strings.CutPrefix(r.Tool, stepTool)
		if !ok || !config.HighImpact(step) || !g.pendingStep(r.Agent, step, true) {
			continue
		}
		g.contain("", r.Agent, mcpproxy.RequireApproval)
		var args struct {
			Alert    string `json:"alert_id"`
			Upstream string `json:"upstream"`
		}
		json.Unmarshal(r.Arguments, &args)
		al := detect.Alert{ID: args.Alert, Agent: r.Agent, User: r.User, Task: r.Task, Session: r.SessionID, RequestID: r.RequestID,
			Upstream: args.Upstream, Class: "resumed", Evidence: strings.Join(r.Reasons, "; ")}
		go g.awaitStep(al, step, r)
	}
	return nil
}

func verdictRank(v string) int {
	return slices.Index([]string{detect.Benign, detect.Suspicious, detect.Malicious}, v)
}
