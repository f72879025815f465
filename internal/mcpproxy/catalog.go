package mcpproxy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/portcullis-dev/portcullis/internal/config"
)

// toolEntry is a tool as served to agents, with where it comes from.
type toolEntry struct {
	up       *Upstream
	original string // the upstream's own name
	// qualified is "<upstream>__<name>", the name policies use whether or
	// not the served name is namespaced.
	qualified string
	tool      *mcp.Tool // as served (namespaced name)
	digest    string    // canonical JSON of the upstream's definition
	args      *argSchema
}

type promptEntry struct {
	up        *Upstream
	original  string
	qualified string
	prompt    *mcp.Prompt
	digest    string
}

type resourceEntry struct {
	up       *Upstream
	resource *mcp.Resource
	digest   string
}

type templateEntry struct {
	up       *Upstream
	template *mcp.ResourceTemplate
	prefix   string // literal text before the first expression
	digest   string
}

// Problem is something wrong with what an upstream offers: a collision or an
// invalid definition. Problems are reported and the item is not served.
type Problem struct {
	Upstreams []string
	Kind      string // "tool", "prompt", "resource", "template"
	Name      string
	Detail    string
}

// Catalog is the aggregated view of all upstreams' offerings. It mirrors that
// view into the agent-facing *mcp.Server, which sends list_changed
// notifications to agents whenever it changes.
type Catalog struct {
	server     *mcp.Server
	namespaced bool
	handlers   catalogHandlers

	mu        sync.RWMutex
	lists     map[string]Lists // by upstream name
	ups       map[string]*Upstream
	tools     map[string]*toolEntry
	prompts   map[string]*promptEntry
	resources map[string]*resourceEntry
	templates []*templateEntry
}

type catalogHandlers struct {
	// admit filters an upstream's tools through tool pinning (nil: all).
	admit    func(upstream string, session int64, tools []*mcp.Tool) ([]*mcp.Tool, error)
	tool     func(*toolEntry) mcp.ToolHandler
	prompt   func(*promptEntry) mcp.PromptHandler
	resource func(*Upstream) mcp.ResourceHandler
	problem  func(Problem)
}

func newCatalog(server *mcp.Server, namespaced bool, h catalogHandlers) *Catalog {
	return &Catalog{
		server: server, namespaced: namespaced, handlers: h,
		lists: map[string]Lists{}, ups: map[string]*Upstream{},
		tools: map[string]*toolEntry{}, prompts: map[string]*promptEntry{}, resources: map[string]*resourceEntry{},
	}
}

var itemNameRE = regexp.MustCompile(`^[A-Za-z0-9_.\-/]{1,128}$`)

// publish replaces u's lists and re-derives the whole view.
func (c *Catalog) publish(u *Upstream, l Lists) {
	if c.handlers.admit != nil {
		tools, err := c.handlers.admit(u.Name, u.Restarts(), l.Tools)
		if err != nil {
			// Cannot check the definitions: serve none of them.
			c.handlers.problem(Problem{Upstreams: []string{u.Name}, Kind: "tool", Name: "*", Detail: "tool pinning unavailable: " + err.Error()})
			tools = nil
		}
		l.Tools = tools
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lists[u.Name] = l
	c.ups[u.Name] = u
	var problems []Problem
	tools, p := c.deriveTools()
	problems = append(problems, p...)
	prompts, p := c.derivePrompts()
	problems = append(problems, p...)
	resources, templates, p := c.deriveResources()
	problems = append(problems, p...)
	c.syncTools(tools)
	c.syncPrompts(prompts)
	c.syncResources(resources, templates)
	c.tools, c.prompts, c.resources, c.templates = tools, prompts, resources, templates
	for _, pr := range problems {
		c.handlers.problem(pr)
	}
}

func (c *Catalog) upstreamNames() []string {
	names := make([]string, 0, len(c.lists))
	for n := range c.lists {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

func (c *Catalog) qualify(upstream, name string) string {
	if !c.namespaced {
		return name
	}
	return upstream + config.NamespaceSeparator + name
}

func (c *Catalog) deriveTools() (map[string]*toolEntry, []Problem) {
	out := map[string]*toolEntry{}
	owners := map[string][]string{}
	var problems []Problem
	for _, un := range c.upstreamNames() {
		for _, t := range c.lists[un].Tools {
			if err := validTool(t); err != nil {
				problems = append(problems, Problem{Upstreams: []string{un}, Kind: "tool", Name: t.Name, Detail: err.Error()})
				continue
			}
			args, err := newArgSchema(t.InputSchema)
			if err != nil {
				problems = append(problems, Problem{Upstreams: []string{un}, Kind: "tool", Name: t.Name, Detail: "unusable input schema: " + truncate(err.Error(), 200)})
				continue
			}
			name := c.qualify(un, t.Name)
			owners[name] = append(owners[name], un)
			served := *t
			served.Name = name
			out[name] = &toolEntry{up: c.ups[un], original: t.Name, qualified: un + config.NamespaceSeparator + t.Name, tool: &served, digest: digest(t), args: args}
		}
	}
	for name, ups := range owners {
		if len(ups) > 1 {
			delete(out, name)
			problems = append(problems, Problem{Upstreams: ups, Kind: "tool", Name: name, Detail: "name collision: not served"})
		}
	}
	return out, problems
}

func validTool(t *mcp.Tool) error {
	if !itemNameRE.MatchString(t.Name) {
		return fmt.Errorf("invalid tool name")
	}
	if len(t.Description) > MaxDescriptionBytes {
		return fmt.Errorf("description exceeds %d bytes", MaxDescriptionBytes)
	}
	b, err := json.Marshal(t.InputSchema)
	if err != nil || len(b) > MaxSchemaBytes {
		return fmt.Errorf("input schema missing, unencodable or over %d bytes", MaxSchemaBytes)
	}
	var m map[string]any
	if json.Unmarshal(b, &m) != nil || m["type"] != "object" {
		return fmt.Errorf(`input schema must be an object schema with "type": "object"`)
	}
	if t.OutputSchema != nil {
		if b, err := json.Marshal(t.OutputSchema); err != nil || len(b) > MaxSchemaBytes {
			return fmt.Errorf("output schema unencodable or over %d bytes", MaxSchemaBytes)
		}
	}
	return nil
}

func (c *Catalog) derivePrompts() (map[string]*promptEntry, []Problem) {
	out := map[string]*promptEntry{}
	owners := map[string][]string{}
	var problems []Problem
	for _, un := range c.upstreamNames() {
		for _, p := range c.lists[un].Prompts {
			if !itemNameRE.MatchString(p.Name) || len(p.Description) > MaxDescriptionBytes {
				problems = append(problems, Problem{Upstreams: []string{un}, Kind: "prompt", Name: p.Name, Detail: "invalid name or oversize description"})
				continue
			}
			name := c.qualify(un, p.Name)
			owners[name] = append(owners[name], un)
			served := *p
			served.Name = name
			out[name] = &promptEntry{up: c.ups[un], original: p.Name, qualified: un + config.NamespaceSeparator + p.Name, prompt: &served, digest: digest(p)}
		}
	}
	for name, ups := range owners {
		if len(ups) > 1 {
			delete(out, name)
			problems = append(problems, Problem{Upstreams: ups, Kind: "prompt", Name: name, Detail: "name collision: not served"})
		}
	}
	return out, problems
}

// deriveResources indexes resources by URI. Resource URIs are not rewritten
// (agents and servers both interpret them); a URI or template offered by
// two upstreams is a collision and is served by neither.
func (c *Catalog) deriveResources() (map[string]*resourceEntry, []*templateEntry, []Problem) {
	out := map[string]*resourceEntry{}
	owners := map[string][]string{}
	towners := map[string][]string{}
	var templates []*templateEntry
	var problems []Problem
	for _, un := range c.upstreamNames() {
		for _, r := range c.lists[un].Resources {
			if r.URI == "" || len(r.URI) > MaxURIBytes || len(r.Description) > MaxDescriptionBytes {
				problems = append(problems, Problem{Upstreams: []string{un}, Kind: "resource", Name: truncate(r.URI, 200), Detail: "invalid URI or oversize description"})
				continue
			}
			owners[r.URI] = append(owners[r.URI], un)
			out[r.URI] = &resourceEntry{up: c.ups[un], resource: r, digest: digest(r)}
		}
		for _, t := range c.lists[un].Templates {
			if t.URITemplate == "" || len(t.URITemplate) > MaxURIBytes {
				problems = append(problems, Problem{Upstreams: []string{un}, Kind: "template", Name: truncate(t.URITemplate, 200), Detail: "invalid URI template"})
				continue
			}
			towners[t.URITemplate] = append(towners[t.URITemplate], un)
			prefix, _, _ := strings.Cut(t.URITemplate, "{")
			templates = append(templates, &templateEntry{up: c.ups[un], template: t, prefix: prefix, digest: digest(t)})
		}
	}
	for uri, ups := range owners {
		if len(ups) > 1 {
			delete(out, uri)
			problems = append(problems, Problem{Upstreams: ups, Kind: "resource", Name: truncate(uri, 200), Detail: "URI collision: not served"})
		}
	}
	templates = slices.DeleteFunc(templates, func(t *templateEntry) bool { return len(towners[t.template.URITemplate]) > 1 })
	for tpl, ups := range towners {
		if len(ups) > 1 {
			problems = append(problems, Problem{Upstreams: ups, Kind: "template", Name: truncate(tpl, 200), Detail: "template collision: not served"})
		}
	}
	return out, templates, problems
}

// syncNamed mirrors a named view into the SDK server: it removes what is
// gone or changed and adds what is new or changed.
func syncNamed[E any](old, next map[string]*E, same func(a, b *E) bool, remove func(...string), add func(string, *E)) {
	var gone []string
	for name, o := range old {
		if n, ok := next[name]; !ok || !same(o, n) {
			gone = append(gone, name)
		}
	}
	if len(gone) > 0 {
		remove(gone...)
	}
	for name, e := range next {
		if o, ok := old[name]; ok && same(o, e) {
			continue
		}
		add(name, e)
	}
}

func (c *Catalog) syncTools(next map[string]*toolEntry) {
	syncNamed(c.tools, next, func(a, b *toolEntry) bool { return a.digest == b.digest && a.up == b.up }, c.server.RemoveTools,
		func(name string, e *toolEntry) {
			addSafely(func() { c.server.AddTool(e.tool, c.handlers.tool(e)) }, c.handlers.problem, e.up.Name, "tool", name)
		})
}

func (c *Catalog) syncPrompts(next map[string]*promptEntry) {
	syncNamed(c.prompts, next, func(a, b *promptEntry) bool { return a.digest == b.digest && a.up == b.up }, c.server.RemovePrompts,
		func(name string, e *promptEntry) {
			addSafely(func() { c.server.AddPrompt(e.prompt, c.handlers.prompt(e)) }, c.handlers.problem, e.up.Name, "prompt", name)
		})
}

func (c *Catalog) syncResources(next map[string]*resourceEntry, templates []*templateEntry) {
	syncNamed(c.resources, next, func(a, b *resourceEntry) bool { return a.digest == b.digest && a.up == b.up }, c.server.RemoveResources,
		func(uri string, e *resourceEntry) {
			addSafely(func() { c.server.AddResource(e.resource, c.handlers.resource(e.up)) }, c.handlers.problem, e.up.Name, "resource", uri)
		})
	old := map[string]*templateEntry{}
	for _, t := range c.templates {
		old[t.template.URITemplate] = t
	}
	keep := map[string]bool{}
	for _, t := range templates {
		keep[t.template.URITemplate] = true
		if o, ok := old[t.template.URITemplate]; ok && o.digest == t.digest && o.up == t.up {
			continue
		}
		addSafely(func() { c.server.AddResourceTemplate(t.template, c.handlers.resource(t.up)) }, c.handlers.problem, t.up.Name, "template", t.template.URITemplate)
	}
	var goneT []string
	for tpl := range old {
		if !keep[tpl] {
			goneT = append(goneT, tpl)
		}
	}
	if len(goneT) > 0 {
		c.server.RemoveResourceTemplates(goneT...)
	}
}

// addSafely registers an item with the SDK server, which panics on some
// malformed definitions: an upstream's bad definition must not crash the
// gateway.
func addSafely(add func(), problem func(Problem), upstream, kind, name string) {
	defer func() {
		if r := recover(); r != nil {
			problem(Problem{Upstreams: []string{upstream}, Kind: kind, Name: truncate(name, 200), Detail: fmt.Sprintf("rejected by the MCP server library: %v", r)})
		}
	}()
	add()
}

func (c *Catalog) tool(name string) (*toolEntry, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	e, ok := c.tools[name]
	return e, ok
}

func (c *Catalog) prompt(name string) (*promptEntry, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	e, ok := c.prompts[name]
	return e, ok
}

// resourceUpstream resolves a URI to the upstream that serves it: an exact
// listed resource first, else the single template whose literal prefix
// matches longest. Ambiguity is a failure, never a guess.
func (c *Catalog) resourceUpstream(uri string) (*Upstream, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if e, ok := c.resources[uri]; ok {
		return e.up, true
	}
	var best *templateEntry
	ambiguous := false
	for _, t := range c.templates {
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

func digest(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	var buf bytes.Buffer
	if json.Compact(&buf, b) != nil {
		return string(b)
	}
	return buf.String()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
