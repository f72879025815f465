package mcpproxy

import (
	"context"
	"time"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/identity"
	"github.com/portcullis-dev/portcullis/internal/reason"
	"github.com/portcullis-dev/portcullis/internal/wire"
)

// handle serves one message an agent sent in session s, authenticated as
// pr. Requests run their method's pipeline and are answered through ex;
// notifications and responses (to requests the gateway relayed to the
// agent) are routed.
func (p *Proxy) handle(ctx context.Context, s *Session, pr *identity.Principal, m *wire.Message, ex exchange, traceHeader string) {
	p.opts.Metrics.Request(m.Method)
	switch m.Kind {
	case wire.Request:
		p.request(ctx, s, pr, m, ex, traceHeader)
	case wire.Notification:
		p.agentNotification(ctx, s, m)
	case wire.Response, wire.ErrorReply:
		p.agentAnswer(ctx, s, m)
	}
}

func (p *Proxy) request(ctx context.Context, s *Session, pr *identity.Principal, m *wire.Message, ex exchange, traceHeader string) {
	stages, ok := pipelines[m.Method]
	c := p.newCall(s, pr, m, ex, traceHeader)
	if !ok { // the fronts refuse unknown methods first; this is the second line
		p.refuse(ctx, c, deny(reason.MethodNotAllowed))
		return
	}
	if sp := m.Meta(MetaIntent); s != nil && !sp.Empty() {
		raw, ok := wire.String(m.Raw, sp)
		r := deny(reason.InvalidIntent).withDetail("_meta intent is not a string")
		if ok {
			r = p.acceptIntent(s, pr, raw, "")
		}
		if r != nil {
			p.refuse(ctx, c, r)
			return
		}
	}
	if s != nil && m.Method != "initialize" {
		if r := p.syncSession(ctx, s); r != nil {
			p.refuse(ctx, c, r)
			return
		}
	}
	ctx, c.cancel = context.WithCancel(ctx)
	defer c.cancel()
	if s != nil && m.Method != "initialize" {
		s.track(c)
		defer s.untrack(c)
	}
	p.run(ctx, c, stages)
}

// newCall starts the record of an agent request.
func (p *Proxy) newCall(s *Session, pr *identity.Principal, m *wire.Message, ex exchange, traceHeader string) *call {
	c := &call{method: m.Method, msg: m, s: s, principal: pr, ex: ex, start: p.opts.Now(), requestID: newRequestID(), budgetLeft: -1}
	c.reply = ex.reply
	tc := traceOf(m, traceHeader)
	c.traceID, c.parentSpan = tc.TraceID, tc.ParentID
	who := subjectOf(pr)
	who.RequestID, who.TraceID = c.requestID, c.traceID
	if s != nil {
		who.SessionID = s.id
	}
	c.event = audit.Decision(audit.TypeDecision, c.start, who, m.Method)
	return c
}

// subjectOf attributes an event to the principal pr (none: unattributed).
func subjectOf(pr *identity.Principal) audit.Subject {
	if pr == nil {
		return audit.Subject{}
	}
	return audit.Subject{Agent: pr.Agent, User: pr.User, Task: pr.Task, Credential: pr.CredentialID, Actors: pr.Actors}
}

// agentNotification routes a notification from the agent.
func (p *Proxy) agentNotification(ctx context.Context, s *Session, m *wire.Message) {
	if s == nil {
		return
	}
	if m.Method != "notifications/cancelled" && p.containmentOf(s.id, s.agent) == Terminated {
		return // a terminated session reaches no upstream
	}
	switch m.Method {
	case "notifications/cancelled":
		// The agent gave up on a request: cancelling its context stops the
		// relay, which tells the upstream.
		if c := s.inflightCall(m.Bytes(m.Param("requestId"))); c != nil {
			c.mu.Lock()
			c.cancelled = true
			c.reply = nil // a cancelled request is not answered
			c.mu.Unlock()
			c.cancel()
			return
		}
		// Or a request the gateway relayed to the agent.
		if sc := s.pendingToAgent(m.Bytes(m.Param("requestId"))); sc != nil {
			sc.fail(errCancelledByAgent)
		}
	case "notifications/progress":
		// Progress on a request the gateway relayed to the agent.
		if sc := s.toAgentByToken(m.Bytes(m.Param("progressToken"))); sc != nil {
			sc.progress(ctx, m)
		}
	case "notifications/roots/list_changed", "notifications/tasks/status":
		// For the upstreams the agent's session has of its own (a shared
		// session with an upstream belongs to no single agent's roots).
		s.mu.Lock()
		links := make([]*link, 0, len(s.links))
		for _, l := range s.links {
			if l.key == "" {
				links = append(links, l)
			}
		}
		s.mu.Unlock()
		for _, l := range links {
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			l.conn.Send(sctx, m.Raw)
			cancel()
		}
	}
	// notifications/initialized: nothing to do (each upstream session sent
	// its own when it opened).
}

// agentAnswer routes the agent's answer to a request the gateway relayed
// to it (sampling, elicitation, roots).
func (p *Proxy) agentAnswer(ctx context.Context, s *Session, m *wire.Message) {
	if s == nil {
		return
	}
	sc := s.takeToAgent(m.IDBytes())
	if sc == nil {
		p.opts.Log.Debug("answer to no pending request; dropped", "session", s.id)
		return
	}
	if p.containmentOf(s.id, s.agent) == Terminated {
		sc.fail(errContained) // a terminated session's answers reach no upstream
		return
	}
	sc.answered(m)
}
