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
)

// Classes lists every alert class.
var Classes = []string{UnexpectedTool, DenialBurst, Rate, OffHours}

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
	UnexpectedTool: {"AML.T0053"},          // ATLAS: LLM plugin compromise (a tool used beyond its purpose)
	DenialBurst:    {"T1526", "AML.T0053"}, // ATT&CK: cloud service discovery; probing the tools
	Rate:           {"T1119", "T1030"},     // automated collection; data transfer size limits
	OffHours:       {"T1078"},              // valid accounts (used at an unusual time)
}

var severity = map[string]string{UnexpectedTool: High, DenialBurst: High, Rate: Medium, OffHours: Low}

// Bounds.
const (
	deniedBurst = 5               // denials in a minute that make a burst
	suppressFor = 5 * time.Minute // one alert of a class per session this often
	maxTracked  = 100_000         // agents and sessions tracked at once
)

// Baseline is what an agent is declared to do.
type Baseline struct {
	Agent, Role    string
	Tools          []string // path.Match patterns of qualified names; empty: any
	CallsPerMinute int      // 0: no limit
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

	mu       sync.Mutex
	calls    map[string][]time.Time // by session: requests in the last minute
	denials  map[string][]time.Time // by session: denials in the last minute
	lastSeen map[string]time.Time   // by session+class(+tool): the last alert
}

// New returns a detector for baselines (an agent's own wins over its
// role's).
func New(baselines []Baseline) *Detector {
	d := &Detector{byAgent: map[string]*Baseline{}, byRole: map[string]*Baseline{},
		calls: map[string][]time.Time{}, denials: map[string][]time.Time{}, lastSeen: map[string]time.Time{}}
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

// Empty reports whether there is nothing to watch.
func (d *Detector) Empty() bool { return d == nil || len(d.byAgent)+len(d.byRole) == 0 }

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
	if b == nil {
		return nil
	}
	denied := e.Outcome == audit.OutcomeDeny
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.calls) > maxTracked || len(d.lastSeen) > maxTracked {
		clear(d.calls)
		clear(d.denials)
		clear(d.lastSeen)
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
	if b.CallsPerMinute > 0 && len(calls) > b.CallsPerMinute+1 {
		calls = calls[len(calls)-b.CallsPerMinute-1:] // enough to tell
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
	raise := func(class, evidence string) {
		key := e.SessionID + "\x00" + e.Agent + "\x00" + class
		if class == UnexpectedTool {
			key += "\x00" + e.Target // one harmless deviation does not hide a sensitive one
		}
		if last, ok := d.lastSeen[key]; ok && now.Sub(last) < suppressFor {
			return
		}
		d.lastSeen[key] = now
		out = append(out, Alert{ID: "al-" + rand.Text()[:16], Class: class, Severity: severity[class], Time: now, Agent: e.Agent, User: e.User, Task: e.Task,
			Session: e.SessionID, RequestID: e.RequestID, Actors: e.Actors, Target: e.Target,
			Techniques: Techniques[class], Evidence: evidence, Baseline: b.Source})
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
