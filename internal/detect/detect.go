// Package detect watches what agents do against what they are declared to
// do (the framework's behavioural monitoring, Foundation tier: declared
// baselines) and raises alerts the gateway answers with its response
// playbook.
//
// A baseline says, for an agent (or every agent of a role), which tools
// it is expected to call, how many requests a minute are normal, and in
// which hours it works. The detector sees every decision on a target (the
// audit event, allowed or denied: tool calls, resource reads, prompts,
// completions; not lists) and raises, for one session, at most one alert
// of a class every suppressFor (unexpected_tool: per tool). Windows are
// per session, so one session's traffic never puts another in an alert
// (an agent's rate across sessions is the budget's: limits):
//
//   - unexpected_tool (high): a call, allowed or not, to a tool outside
//     the expected ones;
//   - denial_burst (high): deniedBurst or more denied requests in a minute
//     (probing what it may do);
//   - rate (medium): more requests in a minute than the baseline allows;
//   - off_hours (low): a request outside the active hours.
//
// A call held for approval is not a denial (its outcome is a second
// decision, seen then).
//
// Observe is on the hot path: a few map operations under one lock, no
// allocation beyond the alerts themselves.
package detect

import (
	"crypto/rand"
	"fmt"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/reason"
)

// Alert classes.
const (
	UnexpectedTool = "unexpected_tool"
	DenialBurst    = "denial_burst"
	Rate           = "rate"
	OffHours       = "off_hours"
	// CredentialAccess: results carrying secrets, read again and again in
	// one session (credential hunting, within the expected tools).
	CredentialAccess = "credential_access"
	// LateralMovement: an agent acting on a delegation its delegator's
	// baseline does not expect.
	LateralMovement = "lateral_movement"
	// EgressViolation: a sandboxed tool server tried to reach a
	// destination off its egress allow-list (the proxy refused it).
	EgressViolation = "egress_violation"
)

// Classes lists every alert class (the learned ones are in learn.go).
var Classes = []string{UnexpectedTool, DenialBurst, Rate, OffHours, CredentialAccess, LateralMovement, Anomaly, Drift, EgressViolation}

// Severities, in order.
const (
	Low    = "low"
	Medium = "medium"
	High   = "high"
)

// SeverityRank orders severities (unknown: 0).
func SeverityRank(s string) int { return slices.Index([]string{Low, Medium, High}, s) + 1 }

// Techniques are the MITRE ATT&CK and ATLAS techniques each class may
// indicate.
var Techniques = map[string][]string{
	UnexpectedTool:   {"AML.T0053"},          // ATLAS: LLM plugin compromise (a tool used beyond its purpose)
	DenialBurst:      {"T1526", "AML.T0053"}, // ATT&CK: cloud service discovery; probing the tools
	Rate:             {"T1119", "T1030"},     // automated collection; data transfer size limits
	OffHours:         {"T1078"},              // valid accounts (used at an unusual time)
	CredentialAccess: {"T1552", "AML.T0055"}, // unsecured credentials (ATT&CK, ATLAS)
	LateralMovement:  {"T1550.001"},          // application access token used to move
	Anomaly:          nil,                    // those of its deviating metrics
	Drift:            {"AML.T0051"},          // LLM prompt injection: the usual reason an agent's goals shift
	EgressViolation:  {"T1048", "T1071"},     // exfiltration over an alternative protocol; application-layer C2
}

var severity = map[string]string{UnexpectedTool: High, DenialBurst: High, Rate: Medium, OffHours: Low, Drift: Medium,
	CredentialAccess: High, LateralMovement: High, EgressViolation: High}

// Bounds.
const (
	deniedBurst   = 5 // denials in a minute that make a burst
	secretReads   = 2 // results with secrets within secretsWithin that make a hunt
	secretsWithin = 10 * time.Minute
	suppressFor   = 5 * time.Minute // one alert of a class per session this often
	maxTracked    = 100_000         // agents and sessions tracked at once
	maxWindow     = 600             // requests a minute a session's window counts up to
	// maxSessionAlerts bounds the alerts of one session within
	// suppressFor: a session calling made-up tools one after another
	// raises this many (and is contained by the first), not one a call.
	maxSessionAlerts = 8
)

// Baseline is what an agent is declared to do.
type Baseline struct {
	Agent, Role string
	Tools       []string // path.Match patterns of qualified names; empty: any
	// DelegatesTo are the agents (path patterns) it is expected to
	// delegate to; empty: any.
	DelegatesTo    []string
	CallsPerMinute int // 0: no limit
	// ActiveFrom and ActiveTo are minutes after midnight in Location (From
	// equal To: always).
	ActiveFrom, ActiveTo int
	Location             *time.Location
	// Source names the baseline in evidence ("detection.baselines[0]").
	Source string
}

// Alert is a deviation from a baseline.
type Alert struct {
	ID                 string // unique: "al-..."
	Class, Severity    string
	Time               time.Time
	Agent, User, Task  string
	Session, RequestID string
	Upstream           string // of the call that raised it
	Actors             []string
	Target             string
	Techniques         []string
	Evidence           string
	Baseline           string
}

// Detector evaluates decisions against the baselines.
type Detector struct {
	byAgent map[string]*Baseline
	byRole  map[string]*Baseline

	learn   *learner // nil: no learned baselines
	content bool     // watch screening findings of every agent

	mu       sync.Mutex
	secrets  map[string][]time.Time // by session: results with secrets lately
	calls    map[string][]time.Time // by session: requests in the last minute
	denials  map[string][]time.Time // by session: denials in the last minute
	lastSeen map[string]time.Time   // by session+class(+tool): the last alert
	raised   map[string][]time.Time // by session: its alerts within suppressFor
}

// New returns a detector for baselines (an agent's own wins over its
// role's).
func New(baselines []Baseline) *Detector {
	d := &Detector{byAgent: map[string]*Baseline{}, byRole: map[string]*Baseline{},
		secrets: map[string][]time.Time{}, calls: map[string][]time.Time{}, denials: map[string][]time.Time{}, lastSeen: map[string]time.Time{}, raised: map[string][]time.Time{}}
	for i := range baselines {
		b := &baselines[i]
		if b.Agent != "" {
			d.byAgent[b.Agent] = b
		} else {
			d.byRole[b.Role] = b
		}
	}
	return d
}

// Learn turns on learned baselines and drift detection (before the
// detector is used).
func (d *Detector) Learn(o LearnOptions) { d.learn = newLearner(o) }

// WatchContent turns on the alerts that need no baseline (screening
// findings: credential_access) for every agent.
func (d *Detector) WatchContent() { d.content = true }

// Empty reports whether there is nothing to watch.
func (d *Detector) Empty() bool {
	return d == nil || len(d.byAgent)+len(d.byRole) == 0 && d.learn == nil && !d.content
}

// ObserveFinding takes a screening event of a result the agent read, with
// the categories screening found in it, and returns the alerts it raises:
// credential_access when secretReads results carrying secrets reached one
// session within secretsWithin (credential hunting with tools it may
// use).
func (d *Detector) ObserveFinding(e *audit.Event, categories []string) []Alert {
	if d.Empty() || !d.content || e.Type != audit.TypeScreening || e.Agent == "" || e.SessionID == "" || !slices.Contains(categories, "secret") {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.secrets) > maxTracked {
		clear(d.secrets)
	}
	now := e.Time
	w := d.secrets[e.SessionID]
	if n := len(w); n > 0 && now.Before(w[n-1]) {
		now = w[n-1]
	}
	cut := now.Add(-secretsWithin)
	w = slices.DeleteFunc(append(w, now), func(t time.Time) bool { return !t.After(cut) })
	if len(w) > secretReads {
		w = w[len(w)-secretReads:]
	}
	d.secrets[e.SessionID] = w
	if len(w) < secretReads {
		return nil
	}
	if !d.admit(e.SessionID+"\x00"+e.Agent+"\x00"+CredentialAccess, e.SessionID, now) {
		return nil
	}
	return []Alert{{ID: "al-" + rand.Text()[:16], Class: CredentialAccess, Severity: severity[CredentialAccess], Time: now, Agent: e.Agent, User: e.User, Task: e.Task,
		Session: e.SessionID, RequestID: e.RequestID, Actors: e.Actors, Target: e.Target, Upstream: e.Upstream, Techniques: Techniques[CredentialAccess],
		Evidence: fmt.Sprintf("%d results carrying secrets read within %s (the last: %s)", len(w), secretsWithin, e.Target), Baseline: "screening"}}
}

func (d *Detector) baselineOf(agent string, roles []string) *Baseline {
	if b := d.byAgent[agent]; b != nil {
		return b
	}
	for _, r := range roles {
		if b := d.byRole[r]; b != nil {
			return b
		}
	}
	return nil
}

// Observe takes a decision event and returns the alerts it raises. roles
// are the agent's (the event does not carry them).
func (d *Detector) Observe(e *audit.Event, roles []string) []Alert {
	if d.Empty() || e.Type != audit.TypeDecision || e.Action == "" || e.Action == "list" || e.Agent == "" || e.Code == reason.ApprovalRequired {
		return nil
	}
	tool := e.Action == "call_tool"
	b := d.baselineOf(e.Agent, roles)
	if b == nil && d.learn == nil && len(e.Actors) == 0 {
		return nil
	}
	denied := e.Outcome == audit.OutcomeDeny
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.calls) > maxTracked || len(d.lastSeen) > maxTracked || len(d.raised) > maxTracked {
		clear(d.calls)
		clear(d.denials)
		clear(d.lastSeen)
		clear(d.raised)
	}
	now := e.Time
	win := e.SessionID
	if win == "" {
		win = "agent:" + e.Agent // a stdio session, one per process
	}
	// Windows are kept in order: a decision recorded late counts as now.
	if w := d.calls[win]; len(w) > 0 && now.Before(w[len(w)-1]) {
		now = w[len(w)-1]
	}
	calls := recent(append(d.calls[win], now), now)
	keep := maxWindow // the learned rate counts up to this
	if d.learn == nil && b != nil && b.CallsPerMinute > 0 {
		keep = b.CallsPerMinute + 1 // enough to tell
	}
	if len(calls) > keep {
		calls = calls[len(calls)-keep:]
	}
	d.calls[win] = calls
	var denials []time.Time
	if denied {
		denials = recent(append(d.denials[win], now), now)
		if len(denials) > deniedBurst {
			denials = denials[len(denials)-deniedBurst:]
		}
		d.denials[win] = denials
	}
	var out []Alert
	raiseAs := func(key, class, sev string, techniques []string, evidence, source string) {
		if !d.admit(key, win, now) {
			return
		}
		out = append(out, Alert{ID: "al-" + rand.Text()[:16], Class: class, Severity: sev, Time: now, Agent: e.Agent, User: e.User, Task: e.Task,
			Session: e.SessionID, RequestID: e.RequestID, Actors: e.Actors, Target: e.Target, Upstream: e.Upstream,
			Techniques: techniques, Evidence: evidence, Baseline: source})
	}
	key := e.SessionID + "\x00" + e.Agent + "\x00"
	if d.learn != nil {
		devs, against, drifts := d.learn.observe(e, roles, win, len(calls))
		if len(devs) > 0 {
			raiseAs(key+Anomaly+"\x00"+e.Target, Anomaly, anomalySeverity(devs, d.learn.o.Threshold), techniquesOf(devs),
				anomalyEvidence(devs, d.learn.o.Threshold), "learned "+against.Key)
		}
		for _, dr := range drifts {
			pk, ev := dr[0], dr[1]
			if strings.HasPrefix(pk, "role:") {
				// A role's drift is no one agent's: raised on no session
				// (the playbook contains nothing for it), never on the
				// peer whose call happened to close the window.
				if d.admit("drift\x00"+pk, pk, now) {
					out = append(out, Alert{ID: "al-" + rand.Text()[:16], Class: Drift, Severity: severity[Drift], Time: now,
						Target: pk, Techniques: Techniques[Drift], Evidence: ev, Baseline: "learned " + pk})
				}
				continue
			}
			raiseAs("drift\x00"+pk, Drift, severity[Drift], Techniques[Drift], ev, "learned "+pk)
		}
	}
	if len(e.Actors) > 0 {
		from := e.Actors[0] // the agent that delegated to this one
		if db := d.byAgent[from]; db != nil && len(db.DelegatesTo) > 0 && !matches(db.DelegatesTo, e.Agent) {
			raiseAs(key+LateralMovement, LateralMovement, severity[LateralMovement], Techniques[LateralMovement],
				fmt.Sprintf("acting on a delegation from %s (chain %v), which is expected to delegate to %v only", from, e.Actors, db.DelegatesTo), db.Source)
		}
	}
	if b == nil {
		return out
	}
	raise := func(class, evidence string) {
		k := key + class
		if class == UnexpectedTool {
			k += "\x00" + e.Target // one harmless deviation does not hide a sensitive one
		}
		raiseAs(k, class, severity[class], Techniques[class], evidence, b.Source)
	}
	if tool && len(b.Tools) > 0 && !matches(b.Tools, e.Target) {
		raise(UnexpectedTool, fmt.Sprintf("%s is not among the tools %v the agent is expected to call (%s)", e.Target, b.Tools, e.Outcome))
	}
	if len(denials) >= deniedBurst {
		raise(DenialBurst, fmt.Sprintf("%d denied requests in a minute (the last: %s %s, %s)", len(denials), e.Action, e.Target, e.Code))
	}
	if b.CallsPerMinute > 0 && len(calls) > b.CallsPerMinute {
		raise(Rate, fmt.Sprintf("over %d requests in a minute, the most declared (the last: %s %s)", b.CallsPerMinute, e.Action, e.Target))
	}
	if b.ActiveFrom != b.ActiveTo && !active(b, now) {
		raise(OffHours, fmt.Sprintf("a call at %s, outside the active hours %s-%s %s", now.In(b.Location).Format("15:04"),
			clock(b.ActiveFrom), clock(b.ActiveTo), b.Location))
	}
	return out
}

// recent keeps the times of the last minute (times arrive in order).
func recent(ts []time.Time, now time.Time) []time.Time {
	cut := now.Add(-time.Minute)
	i := 0
	for i < len(ts) && !ts[i].After(cut) {
		i++
	}
	return ts[i:]
}

func matches(patterns []string, name string) bool {
	for _, p := range patterns {
		if ok, _ := path.Match(p, name); ok {
			return true
		}
	}
	return false
}

func active(b *Baseline, t time.Time) bool {
	lt := t.In(b.Location)
	m := lt.Hour()*60 + lt.Minute()
	if b.ActiveFrom < b.ActiveTo {
		return m >= b.ActiveFrom && m < b.ActiveTo
	}
	return m >= b.ActiveFrom || m < b.ActiveTo // across midnight
}

func clock(m int) string { return fmt.Sprintf("%02d:%02d", m/60, m%60) }

func anomalySeverity(devs []deviation, threshold float64) string {
	var sum float64
	for _, d := range devs {
		sum += d.score
	}
	if len(devs) > 1 || sum >= 2*threshold {
		return High
	}
	return Medium
}

func techniquesOf(devs []deviation) []string {
	var ts []string
	for _, d := range devs {
		if !slices.Contains(ts, d.technique) {
			ts = append(ts, d.technique)
		}
	}
	return ts
}

func anomalyEvidence(devs []deviation, threshold float64) string {
	var sum float64
	parts := make([]string, len(devs))
	for i, d := range devs {
		sum += d.score
		parts[i] = fmt.Sprintf("%s (%.1f): %s", d.metric, d.score, d.evidence)
	}
	return fmt.Sprintf("score %.1f over %.1f: %s", sum, threshold, strings.Join(parts, "; "))
}

// admit decides whether an alert of key (session, agent, class and maybe
// target) may be raised now: not if one was within suppressFor, nor if
// the session (budget) raised maxSessionAlerts within it. Called with
// d.mu held.
func (d *Detector) admit(key, budget string, now time.Time) bool {
	if last, ok := d.lastSeen[key]; ok && now.Sub(last) < suppressFor {
		return false
	}
	cut := now.Add(-suppressFor)
	rs := slices.DeleteFunc(d.raised[budget], func(t time.Time) bool { return !t.After(cut) })
	if len(rs) >= maxSessionAlerts {
		d.raised[budget] = rs
		return false
	}
	d.lastSeen[key] = now
	d.raised[budget] = append(rs, now)
	return true
}

// ObserveEgress takes a destination the egress proxy refused to a
// sandboxed server of upstream and returns the alert it raises: one per
// upstream and destination every suppressFor, and at most
// maxSessionAlerts an upstream in that time (a server scanning for a way
// out raises a few, not one a port). It works whatever the baselines:
// an unlisted destination is a deviation from what the operator
// declared for the server.
func (d *Detector) ObserveEgress(upstream, dest, detail string, now time.Time) []Alert {
	if d == nil {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.lastSeen) > maxTracked {
		clear(d.lastSeen)
	}
	if !d.admit("egress\x00"+upstream+"\x00"+dest, "egress\x00"+upstream, now) {
		return nil
	}
	return []Alert{{ID: "al-" + rand.Text()[:16], Class: EgressViolation, Severity: severity[EgressViolation], Time: now,
		Upstream: upstream, Target: dest, Techniques: Techniques[EgressViolation],
		Evidence: fmt.Sprintf("a sandboxed server of upstream %s tried to reach %s, not on its egress allow-list (%s)", upstream, dest, detail),
		Baseline: "upstreams." + upstream + ".stdio.sandbox.egress"}}
}
