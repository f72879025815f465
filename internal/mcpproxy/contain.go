package mcpproxy

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/portcullis-dev/portcullis/internal/audit"

	"github.com/portcullis-dev/portcullis/internal/policy"
	"github.com/portcullis-dev/portcullis/internal/reason"
)

// Containment is how far a session (or every session of an agent) is
// held back by the response to an alert.
type Containment int

// Containment levels, weakest first.
const (
	NotContained Containment = iota
	// RequireApproval: every call of a tool not classified read_only is
	// held for a reviewer's approval, whatever policy says.
	RequireApproval
	// ReadOnly: only tools classified read_only may be called.
	ReadOnly
	// Terminated: every request is refused.
	Terminated
)

// containment holds the levels by session ID and by agent (a session's
// entry goes when the session is removed; agents are few): those this
// gateway applied, and those read from the store (every gateway's, kept
// across restarts), which hold beside them.
type containment struct {
	// any is set once something was contained: until then (always, when
	// no detection is configured) a request pays one atomic load.
	any      atomic.Bool
	mu       sync.RWMutex
	sessions map[string]Containment
	agents   map[string]Containment
	// stored: the store's, replaced whole by SetStored.
	storedSessions map[string]Containment
	storedAgents   map[string]Containment
}

// SetStoredContainment replaces the containments read from the store (by
// session ID, and by agent for every session of an agent).
func (p *Proxy) SetStoredContainment(sessions, agents map[string]Containment) {
	c := &p.contained
	c.mu.Lock()
	defer c.mu.Unlock()
	c.storedSessions, c.storedAgents = sessions, agents
	if len(sessions) > 0 || len(agents) > 0 {
		c.any.Store(true)
	}
}

// maxContained bounds the sessions held back at once (beyond it, the
// oldest are not forgotten: the newest is refused the lighter level and
// gets Terminated, failing closed).
const maxContained = 100_000

// Contain holds back session (or, with session "", every session of
// agent) at level from its next message on; a level never weakens this
// way (Release does).
func (p *Proxy) Contain(session, agent string, level Containment) {
	c := &p.contained
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sessions == nil {
		c.sessions, c.agents = map[string]Containment{}, map[string]Containment{}
	}
	c.any.Store(true)
	if session == "" {
		c.agents[agent] = max(c.agents[agent], level)
		return
	}
	if len(c.sessions) >= maxContained {
		level = Terminated
	}
	c.sessions[session] = max(c.sessions[session], level)
}

// Release lifts the containment of session (or of agent with session "").
func (p *Proxy) Release(session, agent string) {
	c := &p.contained
	c.mu.Lock()
	defer c.mu.Unlock()
	if session == "" {
		delete(c.agents, agent)
		return
	}
	delete(c.sessions, session)
}

// forget drops a removed session's containment.
func (p *Proxy) forget(session string) {
	c := &p.contained
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.sessions, session)
}

// Containment is the level that holds session (of agent) back.
func (p *Proxy) Containment(session, agent string) Containment {
	return p.containmentOf(session, agent)
}

// containmentOf is the level that holds the session back.
func (p *Proxy) containmentOf(session, agent string) Containment {
	c := &p.contained
	if !c.any.Load() {
		return NotContained
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	return max(c.sessions[session], c.agents[agent], c.storedSessions[session], c.storedAgents[agent])
}

// contain refuses what the session's containment forbids: everything
// when terminated; when read-only, calls of tools not classified
// read_only only (t is the call's target; nil for other requests).
func (p *Proxy) contain(c *call, t *policy.Target) error {
	if c.s == nil || c.principal == nil {
		return nil
	}
	switch p.containmentOf(c.s.id, c.principal.Agent) {
	case Terminated:
		return deny(reason.Contained).withDetail("the session is contained: terminated by the response to an alert")
	case ReadOnly:
		if t != nil && !readOnly(*t) {
			return deny(reason.Contained).withDetail("the session is contained: read-only tools only, by the response to an alert")
		}
		if t == nil && carriesData[c.method] {
			return deny(reason.Contained).withDetail("the session is contained: read-only tools only (" + c.method + " sends arguments upstream), by the response to an alert")
		}
	case RequireApproval:
		if t == nil && carriesData[c.method] {
			return deny(reason.Contained).withDetail("the session is contained: " + c.method + " sends arguments upstream and is not reviewed; tools only, by the response to an alert")
		}
		// decide holds such a call for approval; one that passed
		// decide before the containment and was not approved stops here.
		if t != nil && !readOnly(*t) && c.committed && !c.approved {
			return deny(reason.Contained).withDetail("the session is contained: non-read calls need a reviewer's approval, by the response to an alert")
		}
	}
	return nil
}

// approvalContained reports whether c's session is held to approval for
// its non-read calls and c is one.
func (p *Proxy) approvalContained(c *call) bool {
	return c.s != nil && c.principal != nil && !readOnly(c.target) && p.containmentOf(c.s.id, c.principal.Agent) == RequireApproval
}

// carriesData are the requests besides tool calls whose arguments or URI
// reach an upstream: a session held to read-only tools (or to approval)
// is refused them, a channel out otherwise.
var carriesData = map[string]bool{"prompts/get": true, "completion/complete": true, "resources/read": true, "resources/subscribe": true}

// readOnly reports whether the operator classified t read_only (and
// nothing else): an upstream's own annotations are its claims, and a
// contained session is held to what the operator vouched for.
func readOnly(t policy.Target) bool {
	return len(t.Classes) == 1 && t.Classes[0] == "read_only"
}

// containAtRelay refuses, after the decision was committed, a call its
// session's containment now holds back; the refusal is a decision event
// of its own (the agent never hears of a denial the log lacks).
func (p *Proxy) containAtRelay(ctx context.Context, c *call) error {
	var t *policy.Target
	if c.method == "tools/call" {
		t = &c.target
	}
	err := p.contain(c, t)
	if err == nil || c.event == nil || !c.committed {
		return err
	}
	r := asRefusal(err)
	e := p.followUp(c, audit.TypeDecision, reason.Contained)
	e.Outcome, e.Detail = audit.OutcomeDeny, r.detail
	if rerr := p.opts.Recorder.Record(ctx, e); rerr != nil {
		p.opts.Log.Error("audit write failed for a contained call", "request_id", c.requestID, "err", rerr)
	}
	r.recorded = true
	return r
}
