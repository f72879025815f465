package mcpproxy

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/reason"
	"github.com/portcullis-dev/portcullis/internal/screen"
	"github.com/portcullis-dev/portcullis/internal/wire"
)

// connectWait bounds how long an agent's initialize waits for its
// upstreams; one that is slower joins the session when it answers (the
// agent is told its lists changed).
const connectWait = 20 * time.Second

// validClientInfo reports whether info is an MCP Implementation: a name
// and a version, strings (what the agent's upstream sessions are opened
// with: a shape a server refuses would fail them).
func validClientInfo(b []byte, info wire.Span) bool {
	for _, k := range []string{"name", "version"} {
		sp, ok := wire.Lookup(b, info, k)
		if _, isString := wire.String(b, sp); !ok || !isString {
			return false
		}
	}
	for _, k := range []string{"title", "websiteUrl"} {
		if sp, ok := wire.Lookup(b, info, k); ok {
			if _, isString := wire.String(b, sp); !isString {
				return false
			}
		}
	}
	return true
}

// openSession records what the agent said at initialize: its protocol
// version (the newest the gateway speaks if it asked for another), its
// capabilities and its name.
func openSession(p *Proxy, ctx context.Context, c *call) error {
	s, m := c.s, c.msg
	if s == nil {
		return deny(reason.Internal)
	}
	b := m.Raw
	version, _ := wire.String(b, m.Param("protocolVersion"))
	caps, info := m.Param("capabilities"), m.Param("clientInfo")
	if version == "" || !wire.IsObject(b, caps) || !wire.IsObject(b, info) {
		r := deny(reason.BadArguments)
		r.rpcCode, r.text = wire.CodeInvalidParams, "initialize needs protocolVersion, capabilities and clientInfo"
		return r
	}
	if !validClientInfo(b, info) {
		r := deny(reason.BadArguments)
		r.rpcCode, r.text = wire.CodeInvalidParams, "initialize: clientInfo needs a name and a version (strings)"
		return r
	}
	// The agent's name and capabilities go to its upstream sessions:
	// screened as what it writes to them is.
	if sc := p.opts.Screener; sc != nil {
		v := sc.Scan(screen.DirArguments, "", string(info.In(b))+"\n"+string(caps.In(b)))
		if r := p.recordScreening(c, screen.DirArguments, &v); r != nil {
			return r
		}
		if v.Block {
			return deny(reason.ScreeningBlocked).withDetail("screening: initialize: " + v.Summary())
		}
	}
	if !supportedVersion(version) {
		version = LatestProtocol
	}
	s.initMu.Lock()
	defer s.initMu.Unlock()
	if s.opened {
		r := deny(reason.MethodNotAllowed)
		r.rpcCode, r.text = wire.CodeInvalidRequest, "session already initialized"
		return r
	}
	s.version, s.clientCaps, s.clientInfo = version, caps.In(b), info.In(b)
	return nil
}

// connectUpstreams opens the session's sessions with its upstreams (in
// parallel, each with the agent's version and capabilities) and answers
// with what they agreed: the oldest protocol version among them, their
// capabilities merged, their name when there is one upstream.
func connectUpstreams(p *Proxy, ctx context.Context, c *call) error {
	s := c.s
	links := make([]*link, len(p.upstreams))
	var wg sync.WaitGroup
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), connectWait)
	defer cancel()
	for i, u := range p.upstreams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := u.linkFor(cctx, s)
			if err != nil {
				p.opts.Log.Warn("upstream not connected for a new session", "upstream", u.Name, "session", s.id, "err", err)
				return
			}
			links[i] = l
		}()
	}
	wg.Wait()
	s.initMu.Lock()
	version := s.version
	s.initMu.Unlock()
	var caps [][]byte
	var infos, instructions [][]byte
	var names []string
	for i, l := range links {
		if l == nil {
			// Not connected: announce what its probe saw, so that the agent
			// expects its lists.
			if snap := p.upstreams[i].snapshot.Load(); snap != nil {
				caps = append(caps, snapshotCaps(snap))
			}
			continue
		}
		c.answerLike(l)
		if older(l.version, version) {
			version = l.version
		}
		caps = append(caps, l.caps)
		if l.serverInfo != nil {
			infos = append(infos, l.serverInfo)
		}
		if l.instructions != nil {
			instructions = append(instructions, l.instructions)
			names = append(names, l.up.Name)
		}
	}
	s.initMu.Lock()
	s.version = version
	s.initMu.Unlock()
	if err := p.keepSession(ctx, s); err != nil {
		return err
	}
	// The session is recorded as it opens: who, with what client and
	// protocol, and which upstream sessions it has.
	var opened []string
	for i, l := range links {
		if l != nil {
			opened = append(opened, p.upstreams[i].Name)
		}
	}
	name, _ := wire.StringView(c.msg.Raw, wire.Span{})
	if sp, ok := wire.Lookup(c.msg.Raw, c.msg.Param("clientInfo"), "name"); ok {
		name, _ = wire.StringView(c.msg.Raw, sp)
	}
	// In the background: it gates nothing (the upstream sessions are
	// open; every request on the session is decided and recorded).
	e := p.followUp(c, audit.TypeDecision, reason.SessionOpened)
	e.Action, e.Outcome, e.PolicyVersion = "open_session", audit.OutcomeAllow, p.opts.Decider.Version()
	e.Detail = truncate(fmt.Sprintf("client %q, protocol %s, upstream sessions: %s", name, version, strings.Join(opened, ", ")), 500)
	p.recordBackground(e)
	s.initMu.Lock()
	s.opened = true
	s.initMu.Unlock()
	res := []byte(`{"protocolVersion":`)
	res = wire.AppendString(res, version)
	res = append(res, `,"capabilities":`...)
	res = append(res, mergeCaps(caps)...)
	res = append(res, `,"serverInfo":`...)
	if len(p.upstreams) == 1 && len(infos) == 1 {
		res = append(res, infos[0]...)
	} else {
		res = append(res, gatewayInfo()...)
	}
	if text := p.joinInstructions(c, names, instructions); text != nil {
		res = append(res, `,"instructions":`...)
		res = append(res, text...)
	}
	res = append(res, '}')
	c.out = wire.NewResponse(c.msg.IDBytes(), res)
	return nil
}

// older reports whether protocol version a is older than b.
func older(a, b string) bool {
	ia, ib := len(protocolVersions), len(protocolVersions)
	for i, v := range protocolVersions {
		if v == a {
			ia = i
		}
		if v == b {
			ib = i
		}
	}
	return ia > ib
}

// mergeCaps merges the upstreams' capability objects: a feature any offers
// is offered (list changes always, since the gateway announces its own).
func mergeCaps(all [][]byte) []byte {
	merged := map[string]any{}
	for _, raw := range all {
		var m map[string]any
		if json.Unmarshal(raw, &m) == nil {
			deepMerge(merged, m)
		}
	}
	for _, k := range []string{"tools", "prompts", "resources"} {
		if o, ok := merged[k].(map[string]any); ok {
			o["listChanged"] = true
		}
	}
	out, err := json.Marshal(merged)
	if err != nil {
		return []byte(`{}`)
	}
	return out
}

func deepMerge(dst, src map[string]any) {
	for k, v := range src {
		if sv, ok := v.(map[string]any); ok {
			if dv, ok := dst[k].(map[string]any); ok {
				deepMerge(dv, sv)
				continue
			}
		}
		if b, ok := v.(bool); ok {
			if db, ok := dst[k].(bool); ok {
				dst[k] = b || db
				continue
			}
		}
		dst[k] = v
	}
}

// snapshotCaps is the capabilities an upstream showed its probe (the
// kinds of lists it offered).
func snapshotCaps(k *linkLists) []byte {
	m := map[string]any{}
	if k.fetched[kindTools] {
		m["tools"] = map[string]any{}
	}
	if k.fetched[kindPrompts] {
		m["prompts"] = map[string]any{}
	}
	if k.fetched[kindResources] {
		m["resources"] = map[string]any{}
	}
	b, _ := json.Marshal(m)
	return b
}

// joinInstructions passes the upstreams' instructions on, screened like
// any text from an upstream (they reach the model). With several
// upstreams each is headed by its upstream's name.
func (p *Proxy) joinInstructions(c *call, names []string, raws [][]byte) []byte {
	if len(raws) == 0 {
		return nil
	}
	var text string
	for i, raw := range raws {
		s, _ := wire.String(raw, wire.Span{Start: 0, End: len(raw)})
		if len(raws) > 1 {
			if i > 0 {
				text += "\n\n"
			}
			text += "## " + names[i] + "\n"
		}
		text += s
	}
	up := p.upstream(names[0])
	return wire.Quote(p.screenText(&call{s: c.s, up: up, event: c.event}, text))
}

func (s *Session) isOpen() bool {
	s.initMu.Lock()
	defer s.initMu.Unlock()
	return s.opened
}
