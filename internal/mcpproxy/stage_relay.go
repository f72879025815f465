package mcpproxy

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/identity"
	"github.com/portcullis-dev/portcullis/internal/reason"
	"github.com/portcullis-dev/portcullis/internal/telemetry"
	"github.com/portcullis-dev/portcullis/internal/token"
	"github.com/portcullis-dev/portcullis/internal/transport"
	"github.com/portcullis-dev/portcullis/internal/wire"
)

// relay sends the agent's request, as received, to the upstream the
// decision was made for, with only these edits: the gateway's request id,
// the upstream's own tool or prompt name, a trace parent naming the
// gateway, and (on a link shared by several agent sessions) a gateway
// progress token. It waits within the upstream's concurrency limit and
// call timeout; messages the upstream sends in relation to the request
// reach the agent in order, ahead of the answer.
func relay(p *Proxy, ctx context.Context, c *call) (err error) {
	// Containment is looked at again last thing before the upstream: the
	// response to an alert raised by this very decision (recorded at
	// commit), or by a call of the session that went on meanwhile, holds
	// this call back too.
	if err := p.containAtRelay(ctx, c); err != nil {
		return err
	}
	u, l := c.up, c.link
	if (c.method == "resources/subscribe" || c.method == "resources/unsubscribe") && l != nil && l.key != "" {
		// On an upstream session agent sessions share, one URI's
		// subscriptions and unsubscriptions go one at a time, each
		// recorded before the next is judged.
		uri, _ := c.msg.ParamString("uri")
		release, err := l.subscriptionTurn(ctx, uri, u.queueTimeout)
		switch {
		case errors.Is(err, errQueueTimeout):
			r := unavailable(reason.UpstreamBusy).withDetail("another request about this resource's subscription was in flight for " + u.queueTimeout.String())
			r.retryAfter = u.slots.retryAfter()
			return r
		case err != nil:
			return unavailable(reason.Cancelled)
		}
		defer release()
		if c.method == "resources/unsubscribe" {
			defer func() {
				if c.resp != nil {
					l.subscribed(c.s, uri, false)
				}
			}()
			// The subscription ends upstream only with its last holder.
			if l.subscribedElsewhere(c.s, uri) {
				c.resp, _ = wire.Parse(wire.NewResponse([]byte("0"), []byte("{}")), 0)
				return nil
			}
		} else {
			had, ok := l.holdSubscription(c.s, uri)
			if !ok {
				return unavailable(reason.UpstreamBusy).withDetail("too many subscriptions to route on this upstream session")
			}
			if !had {
				defer func() { l.settleSubscription(c.s, uri, c.resp != nil && c.resp.Kind == wire.Response) }()
			}
		}
	}
	if err := c.reserveTaskRoom(); err != nil {
		return err
	}
	defer c.noteTask() // gives back the room if no task came of the call
	// In use from here, waiting for a slot included: neither idle expiry
	// nor a reclaim takes the upstream session from under the call.
	l.active.Add(1)
	defer l.active.Add(-1)
	slot, err := u.takeSlot(ctx, c)
	if err != nil {
		return err
	}
	defer slot.release()
	// A wait for the slot (or for a subscription's turn) may have lasted
	// up to queue_timeout: a containment that began meanwhile holds the
	// call back too (one atomic load when nothing is contained).
	if err := p.containAtRelay(ctx, c); err != nil {
		return err
	}
	ctx, span := p.opts.Tracer.Start(ctx, "upstream "+u.Name, telemetry.KindClient, c.traceID)
	defer func() { span.Finish(err) }()

	m := c.msg
	c.upID = l.newID()
	edits := []wire.Edit{wire.Replace(m.ID, c.upID)}
	switch {
	case c.tool != nil && c.method == "tools/call" && c.tool.served != c.tool.original:
		edits = append(edits, wire.Replace(m.Param("name"), wire.Quote(c.tool.original)))
	case c.prompt != nil && c.method == "prompts/get" && c.prompt.served != c.prompt.original:
		edits = append(edits, wire.Replace(m.Param("name"), wire.Quote(c.prompt.original)))
	case c.prompt != nil && c.method == "completion/complete" && c.prompt.served != c.prompt.original:
		if sp, ok := wire.Lookup(m.Raw, m.Param("ref"), "name"); ok {
			edits = append(edits, wire.Replace(sp, wire.Quote(c.prompt.original)))
		}
	}
	tp := wire.Quote(childTraceparent(c.traceID, span.ID()))
	var token string
	if meta := m.ParamMeta(); wire.IsObject(m.Raw, meta) {
		var add []byte // members _meta lacks, inserted in one edit
		if sp := m.Meta("traceparent"); !sp.Empty() {
			edits = append(edits, wire.Replace(sp, tp))
		} else {
			add = wire.AppendMember(add, "traceparent", tp)
		}
		if sp := m.Meta(MetaIntent); !sp.Empty() {
			edits = append(edits, wire.Replace(sp, []byte("null"))) // the user's intent stays here
		}
		if sp := m.Meta(MetaCaller); !sp.Empty() {
			edits = append(edits, wire.Replace(sp, c.callerMeta(u))) // only the gateway vouches for the caller
		} else if u.vouched() {
			add = wire.AppendMember(add, MetaCaller, c.callerMeta(u))
		}
		if len(add) > 0 {
			edits = append(edits, wire.InsertMembers(m.Raw, meta, add))
		}
		if sp := m.Meta("progressToken"); !sp.Empty() && l.key != "" {
			token = "pt-" + strconv.FormatInt(l.nextID.Add(1), 10) + "-" + c.requestID
			edits = append(edits, wire.Replace(sp, wire.Quote(token)))
		}
	} else if wire.IsObject(m.Raw, m.Params) {
		mv := wire.AppendMember(nil, "traceparent", tp)
		if u.vouched() {
			mv = wire.AppendMember(mv, MetaCaller, c.callerMeta(u))
		}
		mv = append(append([]byte{'{'}, mv...), '}')
		edits = append(edits, wire.InsertMember(m.Raw, m.Params, "_meta", mv))
	}
	out, err := wire.Parse(wire.Apply(m.Raw, edits...), 0)
	if err != nil {
		return deny(reason.Internal).withDetail("edited request: " + err.Error())
	}
	l.track(c, token)
	defer l.untrack(c, token)
	l.lastUsed.Store(time.Now().UnixNano())
	rctx, cancel := context.WithTimeout(transport.WithPrompt(ctx), u.timeout)
	defer cancel()
	if h := u.cfg.HTTP; h != nil && h.Assertion != nil {
		// Who is behind this request, signed for this upstream alone.
		raw, err := p.assertion(c, h)
		if err != nil {
			return deny(reason.Internal).withDetail("assertion: " + err.Error())
		}
		name := h.Assertion.Header
		if name == "" {
			name = DefaultAssertionHeader
		}
		rctx = transport.WithRequestHeader(rctx, name, raw)
	}
	start := time.Now()
	resp, err := l.conn.RoundTrip(rctx, out, c.related)
	p.opts.Metrics.UpstreamCall(u.Name, resultLabel(err), time.Since(start))
	switch {
	case err == nil:
		c.resp = resp
		c.noteTaskAnswer()
		c.answerLike(l)
		return nil
	case c.wasCancelled() || errors.Is(err, context.Canceled):
		l.cancelUpstream(c.upID, "cancelled by the client")
		return unavailable(reason.Cancelled)
	case errors.Is(err, context.DeadlineExceeded):
		l.cancelUpstream(c.upID, "timed out at the gateway")
		go l.probeAfterTimeout()
		return unavailable(reason.UpstreamTimeout)
	case errors.Is(err, transport.ErrClosed):
		return unavailable(reason.UpstreamUnavailable).withDetail(err.Error())
	}
	var ar *transport.AuthorizationRequired
	if errors.As(err, &ar) {
		return upstreamFailure(err)
	}
	p.opts.Log.Warn("upstream call failed", "upstream", u.Name, "request_id", c.requestID, "err", err)
	return unavailable(reason.UpstreamError).withDetail(err.Error())
}

func (c *call) wasCancelled() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cancelled
}

func resultLabel(err error) string {
	if err != nil {
		return "error"
	}
	return "ok"
}

// noteSubscription records, once the upstream accepted a subscription,
// that this agent session holds it (an unsubscription whatever the
// answer): resources/updated goes to the subscribed sessions alone. On a
// link agent sessions share, the relay stage recorded it already, in the
// URI's turn (recorded here, after the turn, it could undo what the next
// in turn did).
func noteSubscription(p *Proxy, ctx context.Context, c *call) error {
	if c.link != nil && c.link.key != "" {
		return nil
	}
	subscribe := c.method == "resources/subscribe"
	if subscribe && (c.resp == nil || c.resp.Kind != wire.Response) {
		return nil
	}
	if uri, ok := c.msg.ParamString("uri"); ok && c.link != nil {
		c.link.subscribed(c.s, uri, subscribe)
	}
	return nil
}

// related handles what the upstream sends in relation to c before its
// answer: progress and log messages go to the agent on c's stream (in the
// order received), requests to the agent go through their own pipeline.
func (c *call) related(m *wire.Message) {
	l := c.link
	switch m.Kind {
	case wire.Notification:
		switch m.Method {
		case "notifications/progress", "notifications/message":
			if m.Method == "notifications/message" && c.s != nil && !c.s.wantsLog(m) {
				return
			}
			// Their text is the upstream's: screened as results are.
			if msg := l.up.p.screenNotification(c, m, l.tokenEdit(m)...); msg != nil {
				c.send(msg)
			}
		default:
			l.notification(m, c)
		}
	case wire.Request:
		l.serverRequest(m, c)
	}
}

// reply answers the agent, once the decision is on disk (audit.sync
// before_answer; not awaited with background) and within the result size
// limit.
func reply(p *Proxy, ctx context.Context, c *call) error {
	if c.out == nil && c.resp != nil {
		c.out = wire.Apply(c.resp.Raw, wire.Replace(c.resp.ID, c.msg.IDBytes()))
	}
	if len(c.out) > p.opts.Limits.MaxResultBytes+4096 {
		return unavailable(reason.ResultTooLarge)
	}
	if err := p.onDisk(ctx, c); err != nil {
		p.opts.Log.Error("audit sync failed; the answer is withheld", "request_id", c.requestID, "err", err)
		return recordedDenial(reason.AuditUnavailable)
	}
	c.answer(c.out)
	c.noteTaskFetched()
	return nil
}

// pong answers ping.
func pong(p *Proxy, ctx context.Context, c *call) error {
	c.answer(wire.NewResponse(c.msg.IDBytes(), []byte(`{}`)))
	return nil
}

// answerLike answers the agent in the framing the upstream used (an event
// stream or one JSON body), where the front can.
func (c *call) answerLike(l *link) {
	if s, ok := l.conn.(interface{ Streamed() bool }); ok && s.Streamed() {
		if ps, ok := c.ex.(interface{ preferStream() }); ok {
			ps.preferStream()
		}
	}
}

// MetaCaller is the request _meta key by which the gateway tells its
// built-in upstreams (memory, evidence) who calls (identity.Caller).
const MetaCaller = identity.MetaCaller

// vouched reports whether u is a built-in upstream the gateway tells who
// calls.
func (u *Upstream) vouched() bool { return u.cfg.Builtin == "memory" || u.cfg.Builtin == "evidence" }

// callerMeta is MetaCaller's value for a call to u.
func (c *call) callerMeta(u *Upstream) []byte {
	if !u.vouched() || c.principal == nil {
		return []byte("null")
	}
	v := identity.Caller{Agent: c.principal.Agent, User: c.principal.User, Task: c.principal.Task, RequestID: c.requestID, Findings: c.findings}
	if c.s != nil {
		v.Session, v.Labels = c.s.id, c.s.labels.list()
	}
	if c.input != nil {
		v.UntrustedArguments = c.input.UntrustedArguments
	}
	b, err := json.Marshal(v)
	if err != nil {
		return []byte("null")
	}
	return b
}

// DefaultAssertionHeader carries the per-request assertion.
const DefaultAssertionHeader = "Portcullis-Assertion"

// assertion is the signed assertion of who is behind c, for upstream h.
func (p *Proxy) assertion(c *call, h *config.HTTPServer) (string, error) {
	if p.opts.Assert == nil || c.principal == nil {
		return "", errors.New("no signer, or no principal")
	}
	pr := c.principal
	a := token.Assertion{Agent: pr.Agent, User: pr.User, Task: pr.Task, Actors: pr.Actors, RequestID: c.requestID}
	if c.s != nil {
		a.Session = c.s.id
	}
	return p.opts.Assert(h.URL, a)
}
