package mcpproxy

import (
	"context"
	"strings"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/screen"
	"github.com/portcullis-dev/portcullis/internal/wire"
)

// What an upstream sends outside the answers to the gateway's requests:
// notifications to route to the agent sessions of the link, and requests
// towards the agent.

// onMessage handles a message an upstream sent outside any request.
func (l *link) onMessage(m *wire.Message) {
	switch m.Kind {
	case wire.Request:
		l.serverRequest(m, nil)
	case wire.Notification:
		l.notification(m, nil)
	}
	// A response to no pending request: dropped (the transport counts it).
}

// notification routes one notification from the upstream; c is the agent
// request it came with, if any.
func (l *link) notification(m *wire.Message, c *call) {
	if l.probe {
		if strings.HasSuffix(m.Method, "/list_changed") {
			select {
			case l.changed <- struct{}{}:
			default:
			}
		}
		return
	}
	switch m.Method {
	case "notifications/tools/list_changed":
		l.listChanged(kindTools)
	case "notifications/prompts/list_changed":
		l.listChanged(kindPrompts)
	case "notifications/resources/list_changed":
		l.invalidateKind(kindTemplates)
		l.listChanged(kindResources)
	case "notifications/resources/updated":
		// To the sessions subscribed to the resource (or to one it is
		// part of), only; rebuilt: the URI is all it says.
		uri := paramString(m, "uri")
		if uri == "" {
			return
		}
		msg := wire.NewNotification(m.Method, objectOf("uri", wire.Quote(uri)))
		for _, s := range l.subscribers(uri) {
			s.notify(msg)
		}
	case "notifications/elicitation/complete":
		// To the session the elicitation was relayed to, only; rebuilt.
		id := paramString(m, "elicitationId")
		if s := l.elicitationDone(id); s != nil && id != "" {
			s.notify(wire.NewNotification(m.Method, objectOf("elicitationId", wire.Quote(id))))
		}
	case "notifications/message":
		// A log message outside any request goes to the agent session
		// of the upstream session, when it is that session's alone: on
		// one that several hold or have held (over stdio, every log
		// message is outside any request the transport can match; a
		// session that left may have started what logs) its audience
		// cannot be told, and it is not relayed.
		users := l.users()
		if l.key != "" {
			users = nil
			if s := l.soleHolder(); s != nil {
				users = []*Session{s}
			}
		}
		for _, s := range users {
			if !s.wantsLog(m) {
				continue
			}
			if msg := l.up.p.screenNotification(&call{s: s, up: l.up, link: l, event: sessionEvent(s)}, m); msg != nil {
				s.notify(msg)
			}
		}
	case "notifications/progress":
		l.mu.Lock()
		target := l.tokens[string(m.Bytes(m.Param("progressToken")))]
		l.mu.Unlock()
		// Its message is text from the upstream: screened as results are.
		p := l.up.p
		switch {
		case target != nil:
			if msg := p.screenNotification(target, m, l.tokenEdit(m)...); msg != nil {
				target.send(msg)
			}
		case c != nil:
			if msg := p.screenNotification(c, m); msg != nil {
				c.send(msg)
			}
		case l.key == "":
			for _, s := range l.users() {
				if msg := p.screenNotification(&call{s: s, up: l.up, link: l, event: sessionEvent(s)}, m); msg != nil {
					s.notify(msg)
				}
			}
		}
	case "notifications/tasks/status":
		id, _ := wire.String(m.Raw, m.Param("taskId"))
		status, _ := wire.String(m.Raw, m.Param("status"))
		l.taskStatus(id, status)
		l.mu.Lock()
		t, ok := l.tasks[id]
		l.mu.Unlock()
		if ok {
			if msg := l.up.p.screenNotification(&call{s: t.s, up: l.up, link: l, event: sessionEvent(t.s)}, m); msg != nil {
				t.s.notify(msg)
			}
		}
	case "notifications/cancelled":
		// The upstream withdrew a request it had sent the agent.
		for _, s := range l.users() {
			if sc := s.toAgentByUpstream(l, m.Bytes(m.Param("requestId"))); sc != nil {
				sc.fail(errCancelledByUpstream)
			}
		}
	}
}

// listChanged forgets a list and tells the link's agent sessions.
func (l *link) listChanged(kind string) {
	l.invalidateKind(kind)
	for _, s := range l.users() {
		s.notify(listChanged(kind))
	}
}

// track registers an agent request in flight on the link (for progress
// routing and for requests the upstream sends in relation to it).
func (l *link) track(c *call, token string) {
	l.mu.Lock()
	l.calls[string(c.upID)] = c
	if token != "" {
		l.tokens[string(wire.Quote(token))] = c
	}
	l.mu.Unlock()
	if token != "" {
		c.progressToken = c.msg.Bytes(c.msg.Meta("progressToken"))
	}
}

func (l *link) untrack(c *call, token string) {
	l.mu.Lock()
	delete(l.calls, string(c.upID))
	if token != "" {
		delete(l.tokens, string(wire.Quote(token)))
	}
	l.mu.Unlock()
}

// soleCaller is the agent request in flight on the link when there is
// exactly one.
func (l *link) soleCaller() *call {
	l.mu.Lock()
	defer l.mu.Unlock()
	var found *call
	for _, c := range l.calls {
		if found != nil && found.s != c.s {
			return nil
		}
		found = c
	}
	return found
}

// tokenEdit gives a progress notification back the agent's own token
// where the gateway replaced it (no edit where it did not).
func (l *link) tokenEdit(m *wire.Message) []wire.Edit {
	sp := m.Param("progressToken")
	if sp.Empty() {
		return nil
	}
	l.mu.Lock()
	c := l.tokens[string(m.Bytes(sp))]
	l.mu.Unlock()
	if c == nil || c.progressToken == nil {
		return nil
	}
	return []wire.Edit{wire.Replace(sp, c.progressToken)}
}

// cancelUpstream tells the upstream the gateway gave up on a request.
func (l *link) cancelUpstream(id []byte, reason string) {
	params := append([]byte(`{"requestId":`), id...)
	params = append(params, `,"reason":`...)
	params = append(wire.AppendString(params, reason), '}')
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	l.conn.Send(ctx, wire.NewNotification("notifications/cancelled", params))
}

// probeAfterTimeout pings the upstream after a call timed out and closes a
// session that does not answer (a hung stdio server is stopped; the
// session's next request opens a new one).
func (l *link) probeAfterTimeout() {
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	if err := l.ping(ctx); err != nil {
		l.up.log.Warn("upstream unresponsive after a timed-out call; closing its session", "err", err)
		l.up.closeLink(l)
	}
}

// screenNotification screens the text of a notification an upstream sends
// an agent (log messages and their data, progress messages, task status):
// redactions applied, withheld or blocked text replaced, then extra edits;
// nil when the
// notification must be dropped (the labels screening gave the session
// could not be kept).
func (p *Proxy) screenNotification(c *call, m *wire.Message, extra ...wire.Edit) []byte {
	edits, all := p.screenStrings(screen.DirResult, c.up.Name, m.Raw, m.Params, notificationIDs(m)...)
	edits = append(edits, extra...)
	if len(all.Detections) == 0 {
		return wire.Apply(m.Raw, edits...)
	}
	if c.event != nil {
		if r := p.recordScreening(c, screen.DirResult, &all); r != nil {
			// Its labels could not be kept: it must not reach the agent.
			p.opts.Log.Warn("notification dropped: the session's labels could not be kept", "session", c.s.id, "err", r.detail)
			return nil
		}
	}
	return wire.Apply(m.Raw, edits...)
}

// screenText screens one text from an upstream outside a result (its
// instructions): masked, or replaced when it must be withheld.
func (p *Proxy) screenText(c *call, text string) string {
	sc := p.opts.Screener
	if sc == nil {
		return text
	}
	v := sc.Scan(screen.DirResult, c.up.Name, text)
	if len(v.Detections) == 0 {
		return text
	}
	if r := p.recordScreening(c, screen.DirResult, &v); r != nil {
		return "[portcullis: text withheld: the session's labels could not be kept]"
	}
	if v.Block || v.Withhold {
		return "[portcullis: text withheld by screening: " + strings.Join(v.Keys(), ", ") + "]"
	}
	return v.Redacted(text)
}

// sessionEvent is the attribution of things that happen in a session
// outside any request.
func sessionEvent(s *Session) *audit.Event {
	var who audit.Subject
	if pr := s.principal.Load(); pr != nil {
		who = audit.Subject{Agent: pr.Agent, User: pr.User, Task: pr.Task, Credential: pr.CredentialID}
	}
	who.SessionID = s.id
	return audit.Decision(audit.TypeDecision, s.p.opts.Now(), who, "notification")
}

// objectOf is the JSON object {key: val}.
func objectOf(key string, val []byte) []byte {
	return append(append([]byte{'{'}, wire.AppendMember(nil, key, val)...), '}')
}
