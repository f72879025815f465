package mcpproxy

import (
	"context"
	"slices"
	"time"

	"github.com/portcullis-dev/portcullis/internal/policy"
	"github.com/portcullis-dev/portcullis/internal/reason"
	"github.com/portcullis-dev/portcullis/internal/transport"
	"github.com/portcullis-dev/portcullis/internal/wire"
)

// admit: the session is initialised, the credential still valid, and the
// session has a concurrency slot free.
func admit(p *Proxy, ctx context.Context, c *call) error {
	s := c.s
	if s == nil || !s.isOpen() {
		r := deny(reason.NotInitialized)
		r.rpcCode = wire.CodeInvalidRequest
		return r
	}
	if pr := c.principal; pr == nil {
		return deny(reason.Unauthenticated)
	} else if !pr.Expires.IsZero() && time.Now().After(pr.Expires) { // credentials: the real clock
		return deny(reason.CredentialExpired)
	}
	if n := s.calls.Add(1); int(n) > p.opts.Limits.MaxCallsPerSession {
		s.calls.Add(-1)
		return deny(reason.SessionBusy)
	}
	c.onRelease(func() { s.calls.Add(-1) })
	s.touch()
	return p.contain(c, nil)
}

// resolved notes the target in the call and its audit record.
func (c *call) resolved(action string, t policy.Target, u *Upstream) {
	c.target, c.up = t, u
	c.event.Action, c.event.Target, c.event.Upstream = action, t.ID, u.Name
	if c.s != nil {
		c.link = c.s.linkTo(u)
	}
}

func unknownTarget(c *call, action, name string) error {
	c.event.Action, c.event.Target = action, truncate(name, 200)
	return deny(reason.UnknownTarget)
}

// unreachableTool is the refusal for a tool the session is not served
// because its upstream could not open a session for it (at its session
// limit, down): what the upstream last listed has the name. The agent is
// told why (upstream_busy, upstream_unavailable), not that the tool does
// not exist. reopened says that such an upstream took the session now.
func unreachableTool(ctx context.Context, c *call, name string) (reopened bool, err error) {
	for _, u := range c.s.p.upstreams {
		if l := c.s.linkTo(u); l != nil && l.alive() {
			continue
		}
		snap := u.snapshot.Load()
		if snap == nil || !slices.ContainsFunc(snap.tools, func(t *toolEntry) bool { return t.served == name }) {
			continue
		}
		if _, err := u.linkFor(ctx, c.s); err != nil {
			c.event.Action, c.event.Target, c.event.Upstream = policy.ActionCallTool, truncate(name, 200), u.Name
			return false, upstreamFailure(err)
		}
		reopened = true
	}
	return reopened, nil
}

// resolveTool finds the tool the agent named among what its session is
// served; a name not found is looked up once more against fresh lists (a
// tool added since the agent last listed).
func resolveTool(p *Proxy, ctx context.Context, c *call) error {
	name, ok := c.msg.ParamString("name")
	if !ok || name == "" {
		return unknownTarget(c, policy.ActionCallTool, name)
	}
	v := c.s.view(ctx, "")
	e := v.tools[name]
	if e == nil {
		v = c.s.view(ctx, kindTools)
		if e = v.tools[name]; e == nil {
			reopened, err := unreachableTool(ctx, c, name)
			if err != nil {
				return err
			}
			if reopened {
				v = c.s.view(ctx, kindTools)
				e = v.tools[name]
			}
			if e == nil {
				return unknownTarget(c, policy.ActionCallTool, name)
			}
		}
	}
	c.view, c.tool = v, e
	c.resolved(policy.ActionCallTool, e.target, e.up)
	c.event.Target = e.qualified
	return c.needLink()
}

func resolvePrompt(p *Proxy, ctx context.Context, c *call) error {
	name, ok := c.msg.ParamString("name")
	if !ok || name == "" {
		return unknownTarget(c, policy.ActionGetPrompt, name)
	}
	v := c.s.view(ctx, "")
	e := v.prompts[name]
	if e == nil {
		v = c.s.view(ctx, kindPrompts)
		if e = v.prompts[name]; e == nil {
			return unknownTarget(c, policy.ActionGetPrompt, name)
		}
	}
	c.view, c.prompt = v, e
	c.resolved(policy.ActionGetPrompt, policy.Target{Kind: policy.KindPrompt, ID: e.qualified, Upstream: e.up.Name}, e.up)
	return c.needLink()
}

// resolveResource finds the upstream serving a URI (read, subscribe,
// unsubscribe).
func resolveResource(p *Proxy, ctx context.Context, c *call) error {
	action := policy.ActionReadResource
	if c.method != "resources/read" {
		action = policy.ActionSubscribeResource
	}
	uri, ok := c.msg.ParamString("uri")
	if !ok || uri == "" || len(uri) > MaxURIBytes {
		return unknownTarget(c, action, uri)
	}
	v := c.s.view(ctx, "")
	u, found := v.resourceUpstream(uri)
	if !found {
		c.s.view(ctx, kindTemplates)
		v = c.s.view(ctx, kindResources)
		if u, found = v.resourceUpstream(uri); !found {
			return unknownTarget(c, action, uri)
		}
	}
	c.view = v
	c.resolved(action, policy.Target{Kind: policy.KindResource, ID: uri, Upstream: u.Name}, u)
	if err := c.needLink(); err != nil {
		return err
	}
	if c.method != "resources/read" && !c.link.capSubscribe {
		return deny(reason.MethodNotAllowed).withDetail("the upstream does not offer subscriptions")
	}
	return nil
}

// resolveCompletion decides a completion as access to the prompt or
// resource template it completes.
func resolveCompletion(p *Proxy, ctx context.Context, c *call) error {
	b := c.msg.Raw
	ref := c.msg.Param("ref")
	if !wire.IsObject(b, ref) {
		return deny(reason.BadArguments)
	}
	typSp, _ := wire.Lookup(b, ref, "type")
	typ, _ := wire.String(b, typSp)
	v := c.s.view(ctx, "")
	c.view = v
	switch typ {
	case "ref/prompt":
		nameSp, _ := wire.Lookup(b, ref, "name")
		name, _ := wire.String(b, nameSp)
		e := v.prompts[name]
		if e == nil {
			return unknownTarget(c, policy.ActionGetPrompt, name)
		}
		c.prompt = e
		c.resolved(policy.ActionGetPrompt, policy.Target{Kind: policy.KindPrompt, ID: e.qualified, Upstream: e.up.Name}, e.up)
	case "ref/resource":
		uriSp, _ := wire.Lookup(b, ref, "uri")
		uri, _ := wire.String(b, uriSp)
		u, ok := v.resourceUpstream(uri)
		if !ok {
			return unknownTarget(c, policy.ActionReadResource, uri)
		}
		c.resolved(policy.ActionReadResource, policy.Target{Kind: policy.KindResource, ID: uri, Upstream: u.Name}, u)
	default:
		return deny(reason.BadArguments)
	}
	if err := c.needLink(); err != nil {
		return err
	}
	if !c.link.capComplete {
		return deny(reason.MethodNotAllowed).withDetail("the upstream does not offer completions")
	}
	return nil
}

// resolveTask finds the upstream session a task was created through; only
// the agent session that created a task may see or cancel it.
func resolveTask(p *Proxy, ctx context.Context, c *call) error {
	id, ok := c.msg.ParamString("taskId")
	c.event.Action, c.event.Target = "task", truncate(id, 200)
	if !ok || id == "" {
		return deny(reason.UnknownTask)
	}
	c.s.mu.Lock()
	links := make([]*link, 0, len(c.s.links))
	for _, l := range c.s.links {
		links = append(links, l)
	}
	c.s.mu.Unlock()
	for _, l := range links {
		l.mu.Lock()
		t, found := l.tasks[id]
		l.mu.Unlock()
		if found && t.s == c.s {
			c.link, c.up, c.task, c.tool = l, l.up, t, t.tool
			c.event.Upstream = l.up.Name
			if t.tool != nil {
				c.target = t.tool.target
				c.event.Detail = "task " + truncate(id, 100) + " of " + t.tool.qualified
			}
			return nil
		}
	}
	return deny(reason.UnknownTask)
}

// needLink makes sure the call has a live link to its upstream.
func (c *call) needLink() error {
	if c.link != nil && c.link.alive() {
		return nil
	}
	// A call may ask its user to authorize the gateway at the upstream.
	l, err := c.up.linkFor(transport.WithPrompt(context.Background()), c.s)
	if err != nil {
		return upstreamFailure(err)
	}
	c.link = l
	return nil
}
