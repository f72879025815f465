package mcpproxy

import (
	"context"
	"fmt"
	"sync"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/policy"
	"github.com/portcullis-dev/portcullis/internal/reason"
	"github.com/portcullis-dev/portcullis/internal/screen"
	"github.com/portcullis-dev/portcullis/internal/wire"
)

// listState is a list on its way to the agent.
type listState struct {
	kind  string
	items [][]byte // what the agent will see, as served
	from  []string // tasks/list: the upstream of each item
	total int      // what the upstreams offered
}

// gather fetches the list afresh from every upstream of the session (its
// own sessions with them: what each offers this agent).
func gather(p *Proxy, ctx context.Context, c *call) error {
	kind := listKind[c.method]
	c.view = c.s.view(ctx, kind)
	for _, u := range c.view.order {
		if l := c.s.linkTo(u); l != nil {
			c.answerLike(l)
		}
	}
	c.list = &listState{kind: kind}
	c.event.Action = "list"
	return nil
}

// filterList keeps what the agent could ever use: what its task may use,
// and what some arguments could make policy allow (least agency: the rest
// is not shown).
func filterList(p *Proxy, ctx context.Context, c *call) error {
	v, ls := c.view, c.list
	visible := func(action string, t policy.Target) bool {
		return p.opts.Decider.Visible(ctx, &policy.Input{Principal: c.principal, Action: action, Target: t, Method: c.method, RequestID: c.requestID, SessionID: c.s.id})
	}
	pr := c.principal
	inTask := func(qualified string) bool {
		if pr.Task == "" {
			return true
		}
		for _, t := range pr.TaskTools {
			if t == qualified {
				return true
			}
		}
		return false
	}
	for _, u := range v.order {
		k := v.lists[u]
		switch ls.kind {
		case kindTools:
			for _, e := range k.tools {
				ls.total++
				if v.tools[e.served] == e && inTask(e.qualified) && visible(policy.ActionCallTool, e.target) {
					ls.items = append(ls.items, e.raw)
				}
			}
		case kindPrompts:
			for _, e := range k.prompts {
				ls.total++
				if v.prompts[e.served] == e && visible(policy.ActionGetPrompt, policy.Target{Kind: policy.KindPrompt, ID: e.qualified, Upstream: u.Name}) {
					ls.items = append(ls.items, e.raw)
				}
			}
		case kindResources:
			for _, e := range k.resources {
				ls.total++
				if v.resources[e.uri] == e && visible(policy.ActionReadResource, policy.Target{Kind: policy.KindResource, ID: e.uri, Upstream: u.Name}) {
					ls.items = append(ls.items, e.raw)
				}
			}
		case kindTemplates:
			for _, e := range k.templates {
				ls.total++
				if servedTemplate(v, e) && visible(policy.ActionReadResource, policy.Target{Kind: policy.KindResource, ID: e.template, Upstream: u.Name}) {
					ls.items = append(ls.items, e.raw)
				}
			}
		}
	}
	return nil
}

func servedTemplate(v *sessionView, e *templateEntry) bool {
	for _, t := range v.templates {
		if t == e {
			return true
		}
	}
	return false
}

// commitList records what the agent was shown and builds the answer.
func commitList(p *Proxy, ctx context.Context, c *call) error {
	ls := c.list
	e := c.event
	e.Outcome, e.PolicyVersion = audit.OutcomeAllow, p.opts.Decider.Version()
	e.Detail = fmt.Sprintf("%d of %d visible", len(ls.items), ls.total)
	if !p.record(ctx, c, true) {
		return recordedDenial(reason.AuditUnavailable)
	}
	n := 16
	for _, it := range ls.items {
		n += len(it) + 1
	}
	out := make([]byte, 0, n)
	out = append(out, `{"`...)
	out = append(out, ls.kind...)
	out = append(out, `":[`...)
	for i, it := range ls.items {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, it...)
	}
	out = append(out, "]}"...)
	c.out = wire.NewResponse(c.msg.IDBytes(), out)
	return nil
}

// gatherTasks lists the tasks the agent session created, from every
// upstream session that lists tasks.
func gatherTasks(p *Proxy, ctx context.Context, c *call) error {
	c.event.Action = "list"
	c.list = &listState{kind: "tasks"}
	c.s.mu.Lock()
	links := make([]*link, 0, len(c.s.links))
	for _, l := range c.s.links {
		if l.capTaskList {
			links = append(links, l)
		}
	}
	c.s.mu.Unlock()
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, l := range links {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := l.request(ctx, "tasks/list", nil, nil)
			if err != nil || res.Kind != wire.Response {
				return
			}
			b := res.Raw
			wire.Elements(b, res.ResultMember("tasks"), func(el wire.Span) bool {
				sp, _ := wire.Lookup(b, el, "taskId")
				id, _ := wire.String(b, sp)
				l.mu.Lock()
				t, mine := l.tasks[id]
				l.mu.Unlock()
				mu.Lock()
				c.list.total++
				if mine && t.s == c.s {
					c.list.items = append(c.list.items, el.In(b))
					c.list.from = append(c.list.from, l.up.Name)
				}
				mu.Unlock()
				return true
			})
		}()
	}
	wg.Wait()
	return nil
}

// screenTaskList screens the tasks gathered (their status messages are
// the upstreams' text) as results are.
func screenTaskList(p *Proxy, ctx context.Context, c *call) error {
	var all screen.Verdict
	for i, it := range c.list.items {
		// A text a rule blocks is withheld in place (screenStrings): the
		// rest of the list still serves.
		item := wire.Span{Start: 0, End: len(it)}
		edits, v := p.screenStrings(screen.DirResult, c.list.from[i], it, item, idSpot{item, taskIDs})
		c.list.items[i] = wire.Apply(it, edits...)
		all.Merge(v)
	}
	if r := p.recordScreening(c, screen.DirResult, &all); r != nil {
		return r
	}
	return nil
}

// logLevelNames are the levels logging/setLevel may set (RFC 5424
// severities), least severe first, at their rank.
var logLevelNames = [...]string{1: "debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"}

// logRank is each level's rank; 0 for a string that is not one.
var logRank = func() map[string]int32 {
	m := map[string]int32{}
	for i, name := range logLevelNames {
		if name != "" {
			m[name] = int32(i)
		}
	}
	return m
}()

// commitLevel records the agent's logging/setLevel (a valid level; any
// other is refused, and the refusal recorded) before it takes effect.
func commitLevel(p *Proxy, ctx context.Context, c *call) error {
	level, _ := c.msg.ParamString("level")
	c.event.Action = "set_log_level"
	if logRank[level] == 0 {
		r := deny(reason.BadArguments)
		r.rpcCode, r.text = wire.CodeInvalidParams, "logging/setLevel needs a level: debug, info, notice, warning, error, critical, alert or emergency"
		return r
	}
	e := c.event
	e.Outcome, e.PolicyVersion, e.Detail = audit.OutcomeAllow, p.opts.Decider.Version(), "level "+level
	if !p.record(ctx, c, true) {
		return recordedDenial(reason.AuditUnavailable)
	}
	return nil
}

// broadcast sends logging/setLevel to every upstream of the session that
// logs, and answers once they have. The upstreams get the level alone:
// nothing else the agent puts in the request reaches them.
func broadcast(p *Proxy, ctx context.Context, c *call) error {
	level, _ := c.msg.ParamString("level")
	// The session's own level: what the gateway relays to it is filtered
	// by it, whatever its upstream sessions log.
	c.s.logLevel.Store(logRank[level])
	var wg sync.WaitGroup
	for _, u := range p.upstreams {
		l, err := u.linkFor(ctx, c.s)
		if err != nil || !l.capLogging || l.key != "" {
			// An upstream session other sessions share keeps its level:
			// one agent session's choice is not imposed on the others.
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.setLevel(ctx, c.s)
		}()
	}
	wg.Wait()
	c.out = wire.NewResponse(c.msg.IDBytes(), []byte(`{}`))
	return nil
}

// setLevel asks an upstream session of s's own for log messages at the
// level s set and above (the level alone), unless it does not log or was
// asked for that level already. One ask at a time per upstream session,
// each for the level set when it begins, so the last level asked is the
// agent's last; a level counts as asked once the server answered.
func (l *link) setLevel(ctx context.Context, s *Session) {
	if !l.capLogging {
		return
	}
	select {
	case l.levelSem <- struct{}{}:
		defer func() { <-l.levelSem }()
	case <-ctx.Done():
		return
	}
	rank := s.logLevel.Load()
	if rank <= 0 || int(rank) >= len(logLevelNames) || l.level == rank {
		return
	}
	params := wire.AppendString([]byte(`{"level":`), logLevelNames[rank])
	params = append(params, '}')
	rctx, cancel := context.WithTimeout(ctx, l.up.timeout)
	defer cancel()
	if res, err := l.request(rctx, "logging/setLevel", params, nil); err == nil && res.Kind == wire.Response {
		l.level = rank
	}
}
