package mcpproxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/policy"
	"github.com/portcullis-dev/portcullis/internal/reason"
	"github.com/portcullis-dev/portcullis/internal/screen"
	"github.com/portcullis-dev/portcullis/internal/telemetry"
	"github.com/portcullis-dev/portcullis/internal/wire"
)

// Requests an upstream sends towards its agent (sampling, elicitation,
// roots) run their own pipeline: route to the agent session they belong
// to, decide (principal: the upstream; resource: the agent), commit,
// relay to the agent, relay its answer back. A refusal answers the
// upstream, never the agent.

var (
	errCancelledByAgent    = errors.New("cancelled by the agent")
	errCancelledByUpstream = errors.New("cancelled by the upstream")
	errContained           = errors.New("the agent's session is contained by the response to an alert")
	errAgentGone           = errors.New("the agent closed its input")
)

// maxServerWait bounds how long a request to an agent may wait for its
// answer (a person may be answering an elicitation).
const maxServerWait = 30 * time.Minute

// serverCall is one request from an upstream on its way to an agent.
type serverCall struct {
	link    *link
	upID    []byte // the upstream's id for it
	related *call  // the agent request it came with, if any
	agentID []byte // the gateway's id for it towards the agent
	token   []byte // its progress token, if any
	// agentToken replaces token towards the agent, so that the agent's
	// progress reaches this upstream whatever tokens other upstreams use.
	agentToken []byte

	// edits are screening's to the request, answerEdits to the agent's
	// answer.
	edits, answerEdits []wire.Edit

	once   sync.Once
	done   chan struct{}
	answer *wire.Message
	err    error
}

func (sc *serverCall) answered(m *wire.Message) {
	sc.once.Do(func() { sc.answer = m; close(sc.done) })
}

func (sc *serverCall) fail(err error) {
	sc.once.Do(func() { sc.err = err; close(sc.done) })
}

// progress relays the agent's progress on the request to the upstream,
// rebuilt from the fields progress has (nothing else the agent adds
// reaches the upstream), its message screened as arguments are (a block
// drops the notification).
func (sc *serverCall) progress(ctx context.Context, p *Proxy, s *Session, m *wire.Message) {
	b := m.Raw
	num := func(key string) []byte {
		sp, _ := wire.Lookup(b, m.Params, key)
		if sp.Empty() || !strings.ContainsRune("-0123456789", rune(b[sp.Start])) {
			return nil
		}
		return sp.In(b)
	}
	tok, progress := sc.token, num("progress") // the upstream's own token
	if len(tok) == 0 || progress == nil {
		return
	}
	params := wire.AppendMember(nil, "progressToken", tok)
	params = wire.AppendMember(params, "progress", progress)
	if total := num("total"); total != nil {
		params = wire.AppendMember(params, "total", total)
	}
	params = append(append([]byte{'{'}, params...), '}')
	if msg := paramString(m, "message"); msg != "" {
		withMsg := append(params[:len(params)-1:len(params)-1], `,"message":`...)
		withMsg = append(wire.AppendString(withMsg, msg), '}')
		c := &call{s: s, up: sc.link.up, link: sc.link, event: sessionEvent(s)}
		all := wire.Span{Start: 0, End: len(withMsg)}
		edits, v := p.screenStrings(screen.DirArguments, sc.link.up.Name, withMsg, all, idSpot{all, progressIDs})
		if r := p.recordScreening(c, screen.DirArguments, &v); r != nil || v.Block {
			return
		}
		params = wire.Apply(withMsg, edits...)
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), probeTimeout)
	defer cancel()
	sc.link.conn.Send(ctx, wire.NewNotification("notifications/progress", params))
}

// serverRequest handles a request from the upstream; c is the agent request
// it came with, if any.
func (l *link) serverRequest(m *wire.Message, c *call) {
	p := l.up.p
	answer := func(msg []byte) {
		ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
		defer cancel()
		l.conn.Send(ctx, msg)
	}
	if m.Method == "ping" {
		answer(wire.NewResponse(m.IDBytes(), []byte(`{}`)))
		return
	}
	stages, ok := serverPipelines[m.Method]
	if !ok || l.probe {
		answer(wire.NewError(m.IDBytes(), wire.CodeMethodNotFound, "not offered through portcullis", nil))
		return
	}
	sc := &serverCall{link: l, upID: m.IDBytes(), related: c, done: make(chan struct{})}
	sc.token = m.Bytes(m.Meta("progressToken"))
	call := &call{
		method: m.Method, msg: m, up: l.up, link: l, server: sc, start: p.opts.Now(), requestID: newRequestID(), budgetLeft: -1,
		reply: answer,
	}
	tc := traceOf(m, "")
	call.traceID, call.parentSpan = tc.TraceID, tc.ParentID
	if c != nil {
		call.traceID, call.parentSpan = c.traceID, c.parentSpan
	}
	e := audit.Decision(audit.TypeServer, call.start, audit.Subject{RequestID: call.requestID, TraceID: call.traceID}, m.Method)
	e.Upstream, e.Action = l.up.Name, serverActions[m.Method]
	call.event = e
	// Its own goroutine: the upstream's stream keeps flowing while the
	// agent answers.
	go p.run(context.Background(), call, stages)
}

var serverActions = map[string]string{
	"sampling/createMessage": policy.ActionSampling,
	"elicitation/create":     policy.ActionElicitation,
	"roots/list":             policy.ActionListRoots,
}

// routeToAgent finds the agent session the request belongs to: the one
// whose request it came with; the session that owns the link; or, on a
// shared link, the only session with a request in flight. Anything else is
// ambiguous and refused.
func routeToAgent(p *Proxy, ctx context.Context, c *call) error {
	sc, l := c.server, c.link
	var s *Session
	switch {
	case sc.related != nil:
		s = sc.related.s
	case l.key == "":
		if users := l.users(); len(users) == 1 {
			s = users[0]
		}
	default:
		if sole := l.soleCaller(); sole != nil {
			s, sc.related = sole.s, sole
		}
	}
	if s == nil {
		return deny(reason.AmbiguousSession)
	}
	c.s = s
	c.principal = s.principal.Load()
	e := c.event
	e.SessionID, e.Target = s.id, s.agent
	if c.principal != nil {
		e.Agent, e.User, e.Task, e.Credential = c.principal.Agent, c.principal.User, c.principal.Task, c.principal.CredentialID
	}
	return nil
}

// decideServerRequest asks policy whether the upstream may send this
// request to the agent.
func decideServerRequest(p *Proxy, ctx context.Context, c *call) error {
	if r := p.syncSession(ctx, c.s); r != nil {
		return r
	}
	in := &policy.Input{
		Upstream: c.up.Name, Action: c.event.Action, RequestID: c.requestID, SessionID: c.s.id, Method: c.method,
		Target: policy.Target{Kind: policy.KindAgent, ID: c.s.agent}, Labels: c.s.labels.list(),
	}
	_, span := p.opts.Tracer.Start(ctx, "policy.decide", telemetry.KindInternal, c.traceID)
	d := p.opts.Decider.Decide(in)
	setDecision(span, d)
	span.Finish(nil)
	e := c.event
	e.Policies, e.Reasons, e.Errors, e.PolicyVersion = d.Policies, d.Reasons, d.Errors, d.Version
	if !d.Allow {
		return deny(d.Code)
	}
	return nil
}

// screenServerRequest screens the text an upstream sends the agent with its
// request (a sampling request's messages and system prompt, an
// elicitation's message and requested schema) as results are: masked,
// withheld, labelled; a rule that blocks refuses the request.
func screenServerRequest(p *Proxy, ctx context.Context, c *call) error {
	if c.method == "elicitation/create" && paramString(c.msg, "mode") == "url" {
		if err := elicitationURL(paramString(c.msg, "url"), c.up.local()); err != nil {
			return deny(reason.BadArguments).withDetail("elicitation url: " + err.Error())
		}
	}
	ids := []idSpot{{c.msg.Params, []string{"elicitationId"}}, {c.msg.ParamMeta(), progressIDs}}
	edits, err := p.screenServerText(c, screen.DirResult, c.msg, c.msg.Params, "screening: ", ids...)
	c.server.edits = edits
	return err
}

// elicitationURL checks the URL a URL elicitation asks the user to open:
// absolute https, or (from a server running on this machine, local) http
// to this machine, its own page; never a script, a file or another scheme
// a client might act on, and a remote server never sends the user's
// browser to this machine's services.
func elicitationURL(raw string, local bool) error {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return err
	case len(raw) > MaxURIBytes:
		return errors.New("too long")
	case u.Host == "" || u.User != nil:
		return errors.New("not an absolute URL with a host and no credentials")
	case u.Scheme == "https":
		return nil
	case u.Scheme == "http" && local:
		if ip := net.ParseIP(u.Hostname()); u.Hostname() == "localhost" || ip != nil && ip.IsLoopback() {
			return nil
		}
		return errors.New("http is for this machine only (localhost); use https")
	}
	return fmt.Errorf("scheme %q: only https (or http to localhost)", u.Scheme)
}

// local reports whether u runs on this machine (a stdio server, or one
// built into the gateway).
func (u *Upstream) local() bool { return u.cfg.Stdio != nil || u.cfg.Builtin != "" }

// elicitationURLsIn checks the URL elicitations an upstream's
// URL-elicitation-required error (-32042) carries in its data.
func elicitationURLsIn(m *wire.Message, local bool) error {
	b := m.Raw
	code, _ := wire.Lookup(b, m.Error, "code")
	if string(code.In(b)) != strconv.Itoa(CodeURLElicitation) {
		return nil
	}
	data, _ := wire.Lookup(b, m.Error, "data")
	list, _ := wire.Lookup(b, data, "elicitations")
	var err error
	wire.Elements(b, list, func(el wire.Span) bool {
		sp, _ := wire.Lookup(b, el, "url")
		u, _ := wire.StringView(b, sp)
		err = elicitationURL(u, local)
		return err == nil
	})
	return err
}

// screenAgentAnswer screens what the agent answers the upstream (a
// completion, an elicitation's content, its roots, or its error) as
// arguments are, since it leaves for the upstream: masked; a rule that
// blocks refuses it (the upstream gets an error, the text goes nowhere).
func screenAgentAnswer(p *Proxy, ctx context.Context, c *call) error {
	a := c.server.answer
	scope := a.Result
	if a.Kind == wire.ErrorReply {
		scope = a.Error
	}
	// A task-augmented request's answer is a task (its id and status).
	edits, err := p.screenServerText(c, screen.DirArguments, a, scope, "screening the agent's answer: ", idSpot{a.ResultMember("task"), taskIDs})
	c.server.answerEdits = edits
	return err
}

// screenServerText screens the strings of m inside scope in direction dir
// and records what screening found; a block is a refusal (its detail
// prefixed with what), else the edits to m.
func (p *Proxy) screenServerText(c *call, dir string, m *wire.Message, scope wire.Span, what string, ids ...idSpot) ([]wire.Edit, error) {
	edits, v := p.screenStrings(dir, c.up.Name, m.Raw, scope, ids...)
	if r := p.recordScreening(c, dir, &v); r != nil {
		return nil, r
	}
	if v.Block {
		return nil, deny(reason.ScreeningBlocked).withDetail(what + v.Summary())
	}
	return edits, nil
}

// relayToAgent sends the request to the agent under a gateway id (on the
// stream of the request it came with when that is open) and waits for the
// answer.
func relayToAgent(p *Proxy, ctx context.Context, c *call) error {
	sc, s := c.server, c.s
	if err := p.onDisk(ctx, c); err != nil {
		return recordedDenial(reason.AuditUnavailable)
	}
	sc.agentID = []byte(strconv.Quote("pc-" + strconv.FormatInt(s.nextID.Add(1), 10)))
	if err := s.addToAgent(sc); err != nil {
		return err
	}
	defer s.takeToAgent(sc.agentID)
	elicitID := ""
	if c.method == "elicitation/create" && paramString(c.msg, "mode") == "url" {
		// A URL elicitation completes later: its notification goes to
		// this session alone (forgotten unless the user accepts).
		if elicitID = paramString(c.msg, "elicitationId"); elicitID != "" {
			c.link.elicited(s, elicitID)
			defer func() {
				var a *wire.Message
				select {
				case <-sc.done: // the answer is set before done closes
					a = sc.answer
				default:
				}
				if a == nil || a.Kind != wire.Response || paramStringIn(a.Raw, a.Result, "action") != "accept" {
					c.link.elicitationDone(elicitID)
				}
			}()
		}
	}
	edits := append(sc.edits, wire.Replace(c.msg.ID, sc.agentID))
	if sp := c.msg.Meta("progressToken"); !sp.Empty() {
		sc.agentToken = []byte(strconv.Quote("pc-progress-" + strconv.FormatInt(s.nextID.Add(1), 10)))
		edits = append(edits, wire.Replace(sp, sc.agentToken))
	}
	msg := wire.Apply(c.msg.Raw, edits...)
	if sc.related != nil {
		sc.related.send(msg)
	} else {
		s.notify(msg)
	}
	wait := time.NewTimer(maxServerWait)
	defer wait.Stop()
	select {
	case <-sc.done:
	case <-wait.C:
		return unavailable(reason.UpstreamTimeout).withDetail("the agent did not answer")
	case <-s.done:
		return unavailable(reason.UpstreamUnavailable).withDetail("the agent session ended")
	case <-c.link.conn.Done():
		return unavailable(reason.UpstreamUnavailable).withDetail("the upstream session ended")
	}
	if sc.err != nil {
		if errors.Is(sc.err, errCancelledByUpstream) {
			// The upstream withdrew it: tell the agent, answer nobody.
			s.notify(wire.NewNotification("notifications/cancelled", append(append([]byte(`{"requestId":`), sc.agentID...), '}')))
			c.reply = nil
		}
		if errors.Is(sc.err, errAgentGone) {
			return unavailable(reason.UpstreamUnavailable).withDetail(sc.err.Error())
		}
		return unavailable(reason.Cancelled).withDetail(sc.err.Error())
	}
	return nil
}

// replyToUpstream relays the agent's answer under the upstream's id. A
// task the agent created for the request (a task-augmented request) is
// noted: its status notifications go to this upstream alone.
func replyToUpstream(p *Proxy, ctx context.Context, c *call) error {
	a := c.server.answer
	if a.Kind == wire.Response {
		task := a.ResultMember("task")
		sp, _ := wire.Lookup(a.Raw, task, "taskId")
		if id, _ := wire.String(a.Raw, sp); id != "" {
			c.s.agentTask(id, c.link)
		}
	}
	c.answer(wire.Apply(a.Raw, append(c.server.answerEdits, wire.Replace(a.ID, c.msg.IDBytes()))...))
	return nil
}

// Requests relayed to the agent and waiting for its answer.

func (s *Session) addToAgent(sc *serverCall) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return unavailable(reason.UpstreamUnavailable).withDetail("the agent session ended")
	case s.hungUp:
		return unavailable(reason.UpstreamUnavailable).withDetail(errAgentGone.Error())
	case len(s.toAgent) >= maxPendingToAgent:
		return unavailable(reason.SessionBusy).withDetail("too many requests waiting for the agent")
	}
	s.toAgent[string(sc.agentID)] = sc
	return nil
}

func (s *Session) takeToAgent(id []byte) *serverCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	sc := s.toAgent[string(id)]
	delete(s.toAgent, string(id))
	return sc
}

func (s *Session) pendingToAgent(id []byte) *serverCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.toAgent[string(id)]
}

func (s *Session) toAgentByToken(tok []byte) *serverCall {
	if len(tok) == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sc := range s.toAgent {
		if sc.agentToken != nil && string(sc.agentToken) == string(tok) {
			return sc
		}
	}
	return nil
}

func (s *Session) toAgentByUpstream(l *link, upID []byte) *serverCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sc := range s.toAgent {
		if sc.link == l && string(sc.upID) == string(upID) {
			return sc
		}
	}
	return nil
}

// maxAgentTasks bounds the tasks an agent session runs for upstreams that
// the gateway remembers (to route their status).
const maxAgentTasks = 1024

// agentTask notes that the agent runs task id for the upstream on l.
func (s *Session) agentTask(id string, l *link) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.agentTasks == nil {
		s.agentTasks = map[string]*link{}
	}
	if len(s.agentTasks) < maxAgentTasks {
		s.agentTasks[id] = l
	}
}

// agentTaskLink is the upstream session the agent runs task id for, or
// nil; the task is forgotten once its status is final.
func (s *Session) agentTaskLink(id string, final bool) *link {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.agentTasks[id]
	if final {
		delete(s.agentTasks, id)
	}
	return l
}

// paramString is the string member key of m's params, or "" (for keys the
// parse does not record: wire.Message.ParamString finds only those).
func paramString(m *wire.Message, key string) string { return paramStringIn(m.Raw, m.Params, key) }

// paramStringIn is the string member key of the object at obj in b, or "".
func paramStringIn(b []byte, obj wire.Span, key string) string {
	sp, _ := wire.Lookup(b, obj, key)
	v, _ := wire.String(b, sp)
	return v
}
