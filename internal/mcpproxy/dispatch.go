package mcpproxy

import (
	"context"
	"encoding/json"
	"time"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/identity"
	"github.com/portcullis-dev/portcullis/internal/reason"
	"github.com/portcullis-dev/portcullis/internal/screen"
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
			sc.progress(ctx, p, s, m)
		}
	case "notifications/roots/list_changed":
		// For the upstreams the agent's session has of its own (a shared
		// session with an upstream belongs to no single agent's roots),
		// as a fixed message: nothing the agent adds to it is relayed.
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
			l.conn.Send(sctx, wire.NewNotification("notifications/roots/list_changed", nil))
			cancel()
		}
	case "notifications/tasks/status":
		// A task the agent runs for an upstream's request: to that
		// upstream alone, rebuilt from the fields the status has.
		p.agentTaskStatus(ctx, s, m)
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

// taskStatus is a task's status notification as the gateway relays it:
// the fields MCP defines, nothing else.
type taskStatus struct {
	TaskID        string   `json:"taskId"`
	Status        string   `json:"status"`
	StatusMessage *string  `json:"statusMessage,omitempty"`
	CreatedAt     *string  `json:"createdAt,omitempty"`
	LastUpdatedAt *string  `json:"lastUpdatedAt,omitempty"`
	TTL           *float64 `json:"ttl"`
	PollInterval  *float64 `json:"pollInterval,omitempty"`
}

var taskStatuses = map[string]bool{"working": true, "input_required": true, "completed": true, "failed": true, "cancelled": true}

// agentTaskStatus relays the status of a task the agent runs for an
// upstream to that upstream: rebuilt from its known fields, its message
// screened as arguments are (a block drops the notification). A status for
// a task the gateway did not see created, or that is malformed, is
// dropped.
func (p *Proxy) agentTaskStatus(ctx context.Context, s *Session, m *wire.Message) {
	var st taskStatus
	if json.Unmarshal(m.Bytes(m.Params), &st) != nil || st.TaskID == "" || !taskStatuses[st.Status] {
		return
	}
	final := st.Status == "completed" || st.Status == "failed" || st.Status == "cancelled"
	l := s.agentTaskLink(st.TaskID, final)
	if l == nil {
		return
	}
	params, err := json.Marshal(st)
	if err != nil {
		return
	}
	c := &call{s: s, up: l.up, link: l, event: sessionEvent(s)}
	all := wire.Span{Start: 0, End: len(params)}
	edits, v := p.screenStrings(screen.DirArguments, l.up.Name, params, all, idSpot{all, taskIDs})
	if r := p.recordScreening(c, screen.DirArguments, &v); r != nil || v.Block {
		return
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	l.conn.Send(sctx, wire.NewNotification("notifications/tasks/status", wire.Apply(params, edits...)))
}
