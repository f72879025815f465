package mcpproxy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/policy"
	"github.com/portcullis-dev/portcullis/internal/reason"
	"github.com/portcullis-dev/portcullis/internal/transport"
	"github.com/portcullis-dev/portcullis/internal/wire"
)

// What an upstream offers, as fetched through one link and served to the
// agents using it: every item keeps the exact bytes the upstream sent,
// with only its name changed when the upstream is namespaced.

// Kinds of list.
const (
	kindTools     = "tools"
	kindPrompts   = "prompts"
	kindResources = "resources"
	kindTemplates = "resourceTemplates"
)

// listMethod is the method that fetches a kind, and listKind the reverse.
var listMethod = map[string]string{
	kindTools: "tools/list", kindPrompts: "prompts/list", kindResources: "resources/list", kindTemplates: "resources/templates/list",
}

var listKind = map[string]string{
	"tools/list": kindTools, "prompts/list": kindPrompts, "resources/list": kindResources, "resources/templates/list": kindTemplates,
}

// toolEntry is one tool as served.
type toolEntry struct {
	up        *Upstream
	original  string // the upstream's own name
	served    string // the name agents use
	qualified string // "<upstream>__<name>", the name policies use
	raw       []byte // the definition with the served name
	target    policy.Target
	args      *argSchema
	// taskSupport is execution.taskSupport ("forbidden" when absent).
	taskSupport string
	digest      string
}

type promptEntry struct {
	up        *Upstream
	original  string
	served    string
	qualified string
	raw       []byte
}

type resourceEntry struct {
	up  *Upstream
	uri string
	raw []byte
}

type templateEntry struct {
	up       *Upstream
	template string
	prefix   string // literal text before the first expression
	raw      []byte
}

// linkLists is what one link listed, by kind (a kind not fetched is nil).
type linkLists struct {
	tools     []*toolEntry
	prompts   []*promptEntry
	resources []*resourceEntry
	templates []*templateEntry
	fetched   map[string]bool
	digest    string // over everything fetched, to tell changes
}

// Problem is something wrong with what an upstream offers: a collision or
// an invalid definition. The item is not served, and the problem is logged
// and audited once.
type Problem struct {
	Upstreams []string
	Kind      string // "tool", "prompt", "resource", "template"
	Name      string
	Detail    string
}

// collisionRemedy is what resolves a collision of kind.
func collisionRemedy(kind string) string {
	switch kind {
	case "tool", "prompt":
		return "give one of the upstreams a namespace: prefix, or a prefix of its own"
	}
	// Resource URIs are served as the upstream gives them: an agent reads
	// them back, and they appear in results, links and notifications.
	return "namespace renames tools and prompts, never resource URIs: serve one of these upstreams from a gateway of its own"
}

func (p Problem) String() string {
	return fmt.Sprintf("%s %q of upstream %s: %s", p.Kind, p.Name, strings.Join(p.Upstreams, " and "), p.Detail)
}

// problemLog reports each distinct problem once (bounded).
type problemLog struct {
	mu   sync.Mutex
	seen map[string]bool
}

const maxProblemsRemembered = 4096

func (p *Proxy) problem(pr Problem) {
	key := pr.String()
	p.problems.mu.Lock()
	if p.problems.seen == nil {
		p.problems.seen = map[string]bool{}
	}
	if p.problems.seen[key] {
		p.problems.mu.Unlock()
		return
	}
	if len(p.problems.seen) < maxProblemsRemembered {
		p.problems.seen[key] = true
	}
	p.problems.mu.Unlock()
	p.opts.Log.Warn("upstream offering refused", "problem", key)
	e := audit.New(audit.TypeUpstream, audit.OutcomeError, reason.OfferingRefused, p.opts.Now(), audit.Subject{})
	e.Target, e.Detail = pr.Kind+":"+truncate(pr.Name, 200), truncate(pr.Detail, 300)
	if len(pr.Upstreams) > 0 {
		e.Upstream = pr.Upstreams[0]
	}
	p.recordBackground(e)
}

var servedNameRE = regexp.MustCompile(`^[A-Za-z0-9_.\-/]{1,160}$`)

// parseItems turns the raw items of a list result into entries of kind,
// reporting invalid ones.
func (l *link) parseItems(kind string, items [][]byte) (out any, problems []Problem) {
	u := l.up
	bad := func(kind, name, detail string) {
		problems = append(problems, Problem{Upstreams: []string{u.Name}, Kind: kind, Name: truncate(name, 200), Detail: detail})
	}
	// A definition is read by several parsers (the pin's digest decodes it
	// with encoding/json, which matches keys case-insensitively; agents
	// read it exactly): keys equal but for letter case, at any depth, would
	// let them read different tools. Such a definition is not served.
	kept := items[:0:0]
	for _, raw := range items {
		if err := wire.Valid(raw, l.up.p.opts.Limits.MaxJSONDepth); err != nil {
			w := itemKinds[kind]
			sp, _ := wire.Lookup(raw, wire.Span{Start: 0, End: len(raw)}, w.key)
			name, _ := wire.String(raw, sp)
			bad(w.name, name, "unreadable definition: "+err.Error())
			continue
		}
		kept = append(kept, raw)
	}
	items = kept
	switch kind {
	case kindTools:
		var tools []*toolEntry
		for _, raw := range items {
			e, err := u.toolEntry(raw)
			if err != nil {
				bad("tool", e.original, err.Error())
				continue
			}
			tools = append(tools, e)
		}
		return tools, problems
	case kindPrompts:
		var prompts []*promptEntry
		for _, raw := range items {
			obj := wire.Span{Start: 0, End: len(raw)}
			nameSp, _ := wire.Lookup(raw, obj, "name")
			name, _ := wire.String(raw, nameSp)
			served := u.prefix + name
			if !itemNameRE.MatchString(name) || !servedNameRE.MatchString(served) || stringLen(raw, obj, "description") > MaxDescriptionBytes {
				bad("prompt", name, "invalid name or oversize description")
				continue
			}
			out := raw
			if u.prefix != "" {
				out = wire.Apply(raw, wire.Replace(nameSp, wire.Quote(served)))
			}
			prompts = append(prompts, &promptEntry{up: u, original: name, served: served, qualified: u.Name + config.NamespaceSeparator + name, raw: out})
		}
		return prompts, problems
	case kindResources:
		var res []*resourceEntry
		for _, raw := range items {
			obj := wire.Span{Start: 0, End: len(raw)}
			sp, _ := wire.Lookup(raw, obj, "uri")
			uri, _ := wire.String(raw, sp)
			if uri == "" || len(uri) > MaxURIBytes || stringLen(raw, obj, "description") > MaxDescriptionBytes {
				bad("resource", uri, "invalid URI or oversize description")
				continue
			}
			res = append(res, &resourceEntry{up: u, uri: uri, raw: raw})
		}
		return res, problems
	default:
		var tpls []*templateEntry
		for _, raw := range items {
			obj := wire.Span{Start: 0, End: len(raw)}
			sp, _ := wire.Lookup(raw, obj, "uriTemplate")
			tpl, _ := wire.String(raw, sp)
			if tpl == "" || len(tpl) > MaxURIBytes {
				bad("template", tpl, "invalid URI template")
				continue
			}
			prefix, _, _ := strings.Cut(tpl, "{")
			tpls = append(tpls, &templateEntry{up: u, template: tpl, prefix: prefix, raw: raw})
		}
		return tpls, problems
	}
}

// itemKinds names each kind of list item in problems, and its identifying
// key.
var itemKinds = map[string]struct{ name, key string }{
	kindTools: {"tool", "name"}, kindPrompts: {"prompt", "name"}, kindResources: {"resource", "uri"}, kindTemplates: {"template", "uriTemplate"},
}

var itemNameRE = regexp.MustCompile(`^[A-Za-z0-9_.\-/]{1,128}$`)

func stringLen(b []byte, obj wire.Span, key string) int {
	sp, ok := wire.Lookup(b, obj, key)
	if !ok {
		return 0
	}
	return sp.End - sp.Start
}

// toolEntry parses and checks one tool definition. Compiled argument
// schemas are shared between links by the definition's digest.
func (u *Upstream) toolEntry(raw []byte) (*toolEntry, error) {
	obj := wire.Span{Start: 0, End: len(raw)}
	nameSp, _ := wire.Lookup(raw, obj, "name")
	name, _ := wire.String(raw, nameSp)
	e := &toolEntry{up: u, original: name}
	if !wire.IsObject(raw, obj) || !itemNameRE.MatchString(name) {
		return e, fmt.Errorf("invalid tool name")
	}
	e.served = u.prefix + name
	if !servedNameRE.MatchString(e.served) {
		return e, fmt.Errorf("served name %q is invalid", truncate(e.served, 200))
	}
	if stringLen(raw, obj, "description") > MaxDescriptionBytes {
		return e, fmt.Errorf("description exceeds %d bytes", MaxDescriptionBytes)
	}
	schemaSp, ok := wire.Lookup(raw, obj, "inputSchema")
	if !ok || schemaSp.End-schemaSp.Start > MaxSchemaBytes || !wire.IsObject(raw, schemaSp) {
		return e, fmt.Errorf("input schema missing, not an object or over %d bytes", MaxSchemaBytes)
	}
	if t, ok := wire.Lookup(raw, schemaSp, "type"); !ok || string(t.In(raw)) != `"object"` {
		return e, fmt.Errorf(`input schema must be an object schema with "type": "object"`)
	}
	if sp, ok := wire.Lookup(raw, obj, "outputSchema"); ok && sp.End-sp.Start > MaxSchemaBytes {
		return e, fmt.Errorf("output schema over %d bytes", MaxSchemaBytes)
	}
	sum := sha256.Sum256(raw)
	e.digest = hex.EncodeToString(sum[:])
	args, err := schemas.get(e.digest, schemaSp.In(raw))
	if err != nil {
		return e, fmt.Errorf("unusable input schema: %s", truncate(err.Error(), 200))
	}
	e.args = args
	e.qualified = u.Name + config.NamespaceSeparator + name
	e.raw = raw
	if u.prefix != "" {
		e.raw = wire.Apply(raw, wire.Replace(nameSp, wire.Quote(e.served)))
	}
	e.target = policy.Target{Kind: policy.KindTool, ID: e.qualified, Upstream: u.Name, Classes: u.p.opts.ToolClasses[e.qualified]}
	e.target.Destructive, e.target.OpenWorld = true, true // MCP's defaults when a server says nothing
	if ann, ok := wire.Lookup(raw, obj, "annotations"); ok && wire.IsObject(raw, ann) {
		if sp, ok := wire.Lookup(raw, ann, "readOnlyHint"); ok {
			e.target.ReadOnly = wire.IsTrue(raw, sp)
		}
		if sp, ok := wire.Lookup(raw, ann, "destructiveHint"); ok {
			e.target.Destructive = wire.IsTrue(raw, sp)
		}
		if sp, ok := wire.Lookup(raw, ann, "openWorldHint"); ok {
			e.target.OpenWorld = wire.IsTrue(raw, sp)
		}
	}
	e.taskSupport = "forbidden"
	if ex, ok := wire.Lookup(raw, obj, "execution"); ok {
		if sp, ok := wire.Lookup(raw, ex, "taskSupport"); ok {
			e.taskSupport, _ = wire.String(raw, sp)
		}
	}
	return e, nil
}

// schemaCache shares compiled input schemas by tool digest (bounded: when
// full it starts over).
type schemaCache struct {
	mu sync.Mutex
	m  map[string]*argSchema
}

const maxCachedSchemas = 8192

var schemas = schemaCache{m: map[string]*argSchema{}}

func (c *schemaCache) get(digest string, schema []byte) (*argSchema, error) {
	c.mu.Lock()
	a, ok := c.m[digest]
	c.mu.Unlock()
	if ok {
		return a, nil
	}
	a, err := newArgSchema(schema)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if len(c.m) >= maxCachedSchemas {
		c.m = map[string]*argSchema{}
	}
	c.m[digest] = a
	c.mu.Unlock()
	return a, nil
}

// admit passes a link's tools through pinning; only approved definitions
// are served. Definitions already approved are remembered until a pin
// changes (RefreshAll).
func (l *link) admit(ctx context.Context, tools []*toolEntry) ([]*toolEntry, error) {
	pin := l.up.p.opts.Pinning
	if pin == nil || len(tools) == 0 {
		return tools, nil
	}
	defs := make([]*mcp.Tool, 0, len(tools))
	byDef := map[*mcp.Tool]*toolEntry{}
	for _, e := range tools {
		var t mcp.Tool
		orig := e.raw
		if l.up.prefix != "" { // pinning knows the upstream's own name
			orig = wire.Apply(e.raw, wire.Replace(nameSpan(e.raw), wire.Quote(e.original)))
		}
		if err := json.Unmarshal(orig, &t); err != nil {
			l.up.p.problem(Problem{Upstreams: []string{l.up.Name}, Kind: "tool", Name: e.original, Detail: "undecodable definition"})
			continue
		}
		defs = append(defs, &t)
		byDef[&t] = e
	}
	admitted, err := pin.Admit(ctx, l.up.Name, l.number, defs)
	if err != nil {
		l.up.p.problem(Problem{Upstreams: []string{l.up.Name}, Kind: "tool", Name: "*", Detail: "tool pinning unavailable: " + err.Error()})
		return nil, nil // cannot check the definitions: serve none of them
	}
	out := make([]*toolEntry, 0, len(admitted))
	for _, t := range admitted {
		if e := byDef[t]; e != nil {
			out = append(out, e)
		}
	}
	return out, nil
}

func nameSpan(raw []byte) wire.Span {
	sp, _ := wire.Lookup(raw, wire.Span{Start: 0, End: len(raw)}, "name")
	return sp
}

// sessionView is what one agent session is served: every link's lists,
// names resolved, collisions refused.
type sessionView struct {
	key       string // the links and list generations it was built from
	tools     map[string]*toolEntry
	prompts   map[string]*promptEntry
	resources map[string]*resourceEntry
	templates []*templateEntry
	order     []*Upstream
	lists     map[*Upstream]*linkLists
}

// view returns the session's view, fetching the kinds not yet listed
// (all of them when fresh is set) from every upstream.
func (s *Session) view(ctx context.Context, fresh string) *sessionView {
	p := s.p
	if fresh == "" {
		if v := s.currentView(); v != nil {
			return v
		}
	}
	type got struct {
		u *Upstream
		l *link
		k *linkLists
	}
	results := make([]got, len(p.upstreams))
	var wg sync.WaitGroup
	for i, u := range p.upstreams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := u.linkFor(ctx, s)
			var ar *transport.AuthorizationRequired
			if errors.As(err, &ar) && ar.PerUser {
				// The user has not authorized the gateway there yet: offer
				// the tools the operator's authorization lists (nothing
				// else of the operator's account), so that calling one
				// asks them to.
				if snap := u.snapshot.Load(); snap != nil {
					results[i] = got{u, nil, &linkLists{tools: snap.tools, fetched: map[string]bool{"tools": true}, digest: "tools of the operator:" + snap.digest}}
				}
				return
			}
			if err != nil {
				p.opts.Log.Debug("upstream not reachable for the session", "upstream", u.Name, "session", s.id, "err", err)
				return
			}
			if fresh != "" {
				l.invalidateKind(fresh)
			}
			k, err := l.lists(ctx)
			if err != nil {
				p.opts.Log.Warn("upstream lists unavailable", "upstream", u.Name, "err", err)
			}
			results[i] = got{u, l, k}
		}()
	}
	wg.Wait()
	var key strings.Builder
	for _, r := range results {
		if r.k != nil {
			key.WriteString(r.u.Name + ":" + r.k.digest + ";")
		}
	}
	s.mu.Lock()
	cached := s.cachedView
	s.mu.Unlock()
	if cached != nil && cached.key == key.String() {
		return cached
	}
	v := &sessionView{key: key.String(), tools: map[string]*toolEntry{}, prompts: map[string]*promptEntry{}, resources: map[string]*resourceEntry{}, lists: map[*Upstream]*linkLists{}}
	toolOwners, promptOwners, uriOwners, tplOwners := map[string][]string{}, map[string][]string{}, map[string][]string{}, map[string][]string{}
	for _, r := range results {
		if r.k == nil {
			continue
		}
		v.order = append(v.order, r.u)
		v.lists[r.u] = r.k
		for _, t := range r.k.tools {
			toolOwners[t.served] = append(toolOwners[t.served], r.u.Name)
			v.tools[t.served] = t
		}
		for _, pr := range r.k.prompts {
			promptOwners[pr.served] = append(promptOwners[pr.served], r.u.Name)
			v.prompts[pr.served] = pr
		}
		for _, rs := range r.k.resources {
			uriOwners[rs.uri] = append(uriOwners[rs.uri], r.u.Name)
			v.resources[rs.uri] = rs
		}
		for _, t := range r.k.templates {
			tplOwners[t.template] = append(tplOwners[t.template], r.u.Name)
			v.templates = append(v.templates, t)
		}
	}
	refuse := func(owners map[string][]string, kind string, drop func(string)) {
		for name, ups := range owners {
			if len(ups) > 1 {
				drop(name)
				p.problem(Problem{Upstreams: ups, Kind: kind, Name: name, Detail: "offered by more than one upstream: served by neither (" + collisionRemedy(kind) + ")"})
			}
		}
	}
	refuse(toolOwners, "tool", func(n string) { delete(v.tools, n) })
	refuse(promptOwners, "prompt", func(n string) { delete(v.prompts, n) })
	refuse(uriOwners, "resource", func(n string) { delete(v.resources, n) })
	refuse(tplOwners, "template", func(n string) {
		kept := v.templates[:0]
		for _, t := range v.templates {
			if t.template != n {
				kept = append(kept, t)
			}
		}
		v.templates = kept
	})
	s.mu.Lock()
	s.cachedView = v
	s.mu.Unlock()
	return v
}

// currentView is the cached view when nothing it was built from changed:
// every upstream has a live link whose lists are fetched and the same as
// when the view was built (the common case, without fetching or
// goroutines).
func (s *Session) currentView() *sessionView {
	s.mu.Lock()
	v := s.cachedView
	links := len(s.links)
	s.mu.Unlock()
	if v == nil || links != len(s.p.upstreams) || len(v.order) != len(s.p.upstreams) {
		return nil
	}
	for _, u := range v.order {
		l := s.linkTo(u)
		if l == nil || !l.alive() {
			return nil
		}
		l.mu.Lock()
		k := l.cached
		l.mu.Unlock()
		if k == nil || k != v.lists[u] {
			return nil
		}
	}
	return v
}

// resourceUpstream resolves a URI to the upstream that serves it: a listed
// resource first, else the single template whose literal prefix matches
// longest. Ambiguity is a refusal, never a guess.
func (v *sessionView) resourceUpstream(uri string) (*Upstream, bool) {
	if e, ok := v.resources[uri]; ok {
		return e.up, true
	}
	var best *templateEntry
	ambiguous := false
	for _, t := range v.templates {
		if t.prefix == "" || !strings.HasPrefix(uri, t.prefix) {
			continue
		}
		switch {
		case best == nil || len(t.prefix) > len(best.prefix):
			best, ambiguous = t, false
		case len(t.prefix) == len(best.prefix) && t.up != best.up:
			ambiguous = true
		}
	}
	if best == nil || ambiguous {
		return nil, false
	}
	return best.up, true
}

// collisions are the names the upstreams' probes found offered twice.
func collisions(ups []*Upstream) []Problem {
	owners := map[string][]string{}
	for _, u := range ups {
		k := u.snapshot.Load()
		if k == nil {
			continue
		}
		for _, t := range k.tools {
			owners["tool\x00"+t.served] = append(owners["tool\x00"+t.served], u.Name)
		}
		for _, pr := range k.prompts {
			owners["prompt\x00"+pr.served] = append(owners["prompt\x00"+pr.served], u.Name)
		}
		for _, r := range k.resources {
			owners["resource\x00"+r.uri] = append(owners["resource\x00"+r.uri], u.Name)
		}
		for _, t := range k.templates {
			owners["template\x00"+t.template] = append(owners["template\x00"+t.template], u.Name)
		}
	}
	var out []Problem
	for key, ups := range owners {
		if len(ups) > 1 {
			kind, name, _ := strings.Cut(key, "\x00")
			out = append(out, Problem{Upstreams: ups, Kind: kind, Name: name, Detail: "offered by more than one upstream"})
		}
	}
	return out
}
