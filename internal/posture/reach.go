package posture

import (
	"context"
	"encoding/json"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/identity"
	"github.com/portcullis-dev/portcullis/internal/policy"
	"github.com/portcullis-dev/portcullis/internal/reason"
	"github.com/portcullis-dev/portcullis/internal/toolreg"
)

// Decisions of a tool for an agent, as the blast radius reports them.
const (
	ReachAllowed     = "allowed"     // permitted with any arguments, nothing guarding it
	ReachGuarded     = "guarded"     // permitted, but forbids reading the arguments or session may refuse a call
	ReachConditional = "conditional" // permitted for some arguments or contexts only
	ReachApproval    = "approval"    // held for a person's approval
	ReachDenied      = "denied"
)

// HighImpactClasses are the tool classes whose calls the blast radius
// counts as high-impact.
var HighImpactClasses = []string{policy.ClassDeletes, policy.ClassSendsExternally, policy.ClassMovesMoney}

// Tool is a tool the gateway knows: from its pinned definitions, or
// named in the configuration.
type Tool struct {
	Name     string   `json:"name"` // as agents see it, and policies name it
	Upstream string   `json:"upstream"`
	Classes  []string `json:"classes"`
	// Labels are the data-flow labels its results give a session.
	Labels                           []string `json:"labels,omitempty"`
	ReadOnly, Destructive, OpenWorld bool     `json:"-"`
}

// ToolReach is one tool's decision for an agent.
type ToolReach struct {
	Tool
	Decision string   `json:"decision"`
	Policies []string `json:"policies,omitempty"`
	// Guards are the forbids that may refuse a call depending on its
	// arguments or the session.
	Guards []string `json:"guards,omitempty"`
	// Approval says why a person must approve (the @approval text).
	Approval []string `json:"approval,omitempty"`
}

// Reach is what an agent can reach under the current policy.
type Reach struct {
	Agent string   `json:"agent"`
	Roles []string `json:"roles"`
	// TaskTools, when set, narrow the reach to a task's tools.
	TaskTools []string `json:"task_tools,omitempty"`
	// Tools lists every tool not denied outright.
	Reachable []ToolReach `json:"tools"`
	// Counts over every known tool.
	Tools         int `json:"known_tools"`
	Allowed       int `json:"allowed"`
	Unconditional int `json:"unconditional"`
	HighImpact    int `json:"high_impact"`
	// StandingHighImpact are high-impact tools callable without approval.
	StandingHighImpact []string `json:"standing_high_impact,omitempty"`
	// NeedApproval are high-impact tools held for a person.
	NeedApproval []string `json:"need_approval,omitempty"`
	Upstreams    []string `json:"upstreams"`
	DataClasses  []string `json:"data_classes"`
	// External are the destinations outside it can send to: tools that
	// send externally, and its stdio servers' egress destinations.
	External []string `json:"external"`
	Money    []string `json:"money_movement"`
	// Delegates are the agents it may hand a task to.
	Delegates []string  `json:"delegates"`
	Trifecta  *Trifecta `json:"lethal_trifecta"`
}

// Trifecta is the lethal trifecta (private data, untrusted content, a way
// out) within one agent's reach.
type Trifecta struct {
	Possible bool     `json:"possible"`
	Private  []string `json:"private_data"`
	Exposure []string `json:"untrusted_content"`
	Exfil    []string `json:"external_communication"`
	// Blocked: every way out is denied once a session holds the labels
	// of the other two (a policy on data-flow labels breaks the chain).
	Blocked bool   `json:"blocked_by_policy"`
	Why     string `json:"why"`
}

// KnownTools are the tools of the pinned definitions (approved ones: the
// gateway serves nothing else) and of the configuration's classifications.
func KnownTools(cfg *config.Config, pins []toolreg.Pin) []Tool {
	ups := map[string]config.Upstream{}
	for _, u := range cfg.Upstreams {
		ups[u.Name] = u
	}
	seen := map[string]*Tool{}
	for _, p := range pins {
		u, ok := ups[p.Upstream]
		if !ok || p.State != toolreg.Approved {
			continue
		}
		var def struct {
			Annotations *struct {
				ReadOnlyHint    bool  `json:"readOnlyHint"`
				DestructiveHint *bool `json:"destructiveHint"`
				OpenWorldHint   *bool `json:"openWorldHint"`
			} `json:"annotations"`
		}
		json.Unmarshal(p.Definition, &def)
		t := &Tool{Name: u.Prefix() + p.Name, Upstream: p.Upstream, Destructive: true, OpenWorld: true}
		if a := def.Annotations; a != nil {
			t.ReadOnly = a.ReadOnlyHint
			if a.DestructiveHint != nil {
				t.Destructive = *a.DestructiveHint
			}
			if a.OpenWorldHint != nil {
				t.OpenWorld = *a.OpenWorldHint
			}
		}
		seen[t.Name] = t
	}
	for _, ct := range cfg.Tools {
		if _, ok := seen[ct.Name]; ok {
			continue
		}
		for _, u := range cfg.Upstreams {
			if p := u.Prefix(); p != "" && strings.HasPrefix(ct.Name, p) {
				seen[ct.Name] = &Tool{Name: ct.Name, Upstream: u.Name, Destructive: true, OpenWorld: true}
			}
		}
	}
	out := make([]Tool, 0, len(seen))
	for _, t := range seen {
		t.Classes, t.Labels = classes(cfg, *t), labels(cfg, ups[t.Upstream], *t)
		out = append(out, *t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func classes(cfg *config.Config, t Tool) []string {
	for _, ct := range cfg.Tools {
		if ct.Name == t.Name && len(ct.Classification) > 0 {
			return ct.Classification
		}
	}
	return policy.Classify(policy.Target{ReadOnly: t.ReadOnly, Destructive: t.Destructive, OpenWorld: t.OpenWorld})
}

// labels are what reading the tool's results gives a session: the tool's
// configured labels, else its upstream's, else untrusted_input for a tool
// not declared closed-world (as the gateway applies them).
func labels(cfg *config.Config, u config.Upstream, t Tool) []string {
	for _, ct := range cfg.Tools {
		if ct.Name == t.Name && ct.Labels != nil {
			return *ct.Labels
		}
	}
	if u.Labels != nil {
		return *u.Labels
	}
	if t.OpenWorld {
		return []string{config.LabelUntrustedInput}
	}
	return nil
}

// BlastRadius computes what agent (with its configured roles; with
// taskTools, a task of those tools) can reach under set: each known tool
// decided with unknown arguments and no session labels, the agents it may
// delegate to, and whether the lethal trifecta is within reach.
func BlastRadius(cfg *config.Config, set *policy.Set, tools []Tool, agent string, taskTools []string, now time.Time) (*Reach, bool) {
	a, ok := cfg.Agent(agent)
	if !ok {
		return nil, false
	}
	eng := policy.NewEngine(set)
	p := &identity.Principal{Agent: a.Name, Roles: a.Roles}
	if taskTools != nil {
		p.Task, p.TaskTools, p.TaskBudget = "blast-radius", taskTools, 1
	}
	r := &Reach{Agent: a.Name, Roles: a.Roles, TaskTools: taskTools, Reachable: []ToolReach{}, Upstreams: []string{}, DataClasses: []string{},
		External: []string{}, Money: []string{}, Delegates: []string{}}
	rules := map[string]policy.Rule{}
	for _, rl := range set.Rules() {
		rules[rl.ID] = rl
	}
	ups := map[string]config.Upstream{}
	for _, u := range cfg.Upstreams {
		ups[u.Name] = u
	}
	for _, t := range tools {
		r.Tools++
		if taskTools != nil && !slices.Contains(taskTools, t.Name) {
			continue // a task sees nothing else
		}
		dec, d := decideTool(eng, p, t, nil, now, rules)
		tr := ToolReach{Tool: t, Decision: dec, Policies: d.Policies, Approval: d.Approval, Guards: eng.Guards(toolInput(p, t, nil, now))}
		high := slices.ContainsFunc(t.Classes, func(c string) bool { return slices.Contains(HighImpactClasses, c) })
		if tr.Decision == ReachDenied {
			continue
		}
		if high {
			r.HighImpact++
			if tr.Decision == ReachApproval {
				r.NeedApproval = append(r.NeedApproval, t.Name)
			} else {
				r.StandingHighImpact = append(r.StandingHighImpact, t.Name)
			}
		}
		if tr.Decision != ReachApproval {
			r.Allowed++
		}
		if tr.Decision == ReachAllowed {
			r.Unconditional++
		}
		r.Reachable = append(r.Reachable, tr)
		addUnique(&r.Upstreams, t.Upstream)
		for _, l := range t.Labels {
			addUnique(&r.DataClasses, l)
		}
		if slices.Contains(t.Classes, policy.ClassSendsExternally) {
			addUnique(&r.External, "tool "+t.Name)
		}
		if slices.Contains(t.Classes, policy.ClassMovesMoney) {
			addUnique(&r.Money, t.Name)
		}
	}
	for _, name := range r.Upstreams {
		u := ups[name]
		switch {
		case u.Stdio != nil && u.Stdio.Sandbox != nil && u.Stdio.Sandbox.Mode == config.SandboxNone:
			addUnique(&r.External, "upstream "+name+": any (not sandboxed)")
		case u.Stdio != nil && u.Stdio.Sandbox != nil && u.Stdio.Sandbox.Mode == config.SandboxRuntime:
			addUnique(&r.External, "upstream "+name+": as its runtime allows")
		case u.Stdio != nil && u.Stdio.Sandbox != nil:
			for _, e := range u.Stdio.Sandbox.Egress {
				addUnique(&r.External, "upstream "+name+": "+e)
			}
		}
	}
	for _, other := range cfg.Agents {
		if other.Name == a.Name {
			continue
		}
		in := &policy.Input{Principal: p, Action: "delegate", Target: policy.Target{Kind: policy.KindAgent, ID: other.Name}, Now: now, BudgetLeft: -1}
		if eng.Decide(in).Allow || eng.Visible(context.Background(), in) {
			r.Delegates = append(r.Delegates, other.Name)
		}
	}
	r.Trifecta = trifecta(eng, p, r, now, rules)
	return r, true
}

func addUnique(s *[]string, v string) {
	if !slices.Contains(*s, v) {
		*s = append(*s, v)
	}
}

func toolInput(p *identity.Principal, t Tool, labels []string, now time.Time) *policy.Input {
	budget := int64(-1)
	if p.Task != "" {
		budget = int64(p.TaskBudget)
	}
	return &policy.Input{Principal: p, Action: "call_tool", Method: "tools/call", Now: now, BudgetLeft: budget, Labels: labels,
		Target: policy.Target{Kind: policy.KindTool, ID: t.Name, Upstream: t.Upstream, ReadOnly: t.ReadOnly, Destructive: t.Destructive, OpenWorld: t.OpenWorld, Classes: t.Classes}}
}

// decideTool classifies a tool's decision for p: allowed whatever the
// arguments, conditional (some arguments or contexts), held for approval,
// or denied.
func decideTool(eng *policy.Engine, p *identity.Principal, t Tool, labels []string, now time.Time, rules map[string]policy.Rule) (string, policy.Decision) {
	in := toolInput(p, t, labels, now)
	d := eng.Decide(in)
	switch {
	case d.Allow:
		for _, id := range d.Policies {
			if rules[id].Context { // conditions on the principal or tool alone are settled
				return ReachConditional, d
			}
		}
		if len(eng.Guards(in)) > 0 {
			return ReachGuarded, d
		}
		return ReachAllowed, d
	case d.Code == reason.ApprovalRequired:
		return ReachApproval, d
	case eng.Visible(context.Background(), in):
		return ReachConditional, d
	}
	return ReachDenied, d
}

// trifecta finds the three legs within r and whether policy breaks the
// chain: every way out denied once a session carries the labels the other
// legs give it.
func trifecta(eng *policy.Engine, p *identity.Principal, r *Reach, now time.Time, rules map[string]policy.Rule) *Trifecta {
	t := &Trifecta{Private: []string{}, Exposure: []string{}, Exfil: []string{}}
	var exfilTools []Tool
	var held []string
	for _, tr := range r.Reachable {
		for _, l := range tr.Labels {
			if l == config.LabelUntrustedInput {
				addUnique(&t.Exposure, tr.Name)
			} else {
				addUnique(&t.Private, tr.Name)
			}
			addUnique(&held, l)
		}
		if slices.Contains(tr.Classes, policy.ClassSendsExternally) {
			t.Exfil = append(t.Exfil, tr.Name)
			exfilTools = append(exfilTools, tr.Tool)
		}
	}
	for _, e := range r.External {
		if strings.HasPrefix(e, "upstream ") {
			t.Exfil = append(t.Exfil, e)
		}
	}
	t.Possible = len(t.Private) > 0 && len(t.Exposure) > 0 && len(t.Exfil) > 0
	switch {
	case !t.Possible:
		var miss []string
		for _, leg := range []struct {
			name  string
			tools []string
		}{{"private data", t.Private}, {"untrusted content", t.Exposure}, {"a way out", t.Exfil}} {
			if len(leg.tools) == 0 {
				miss = append(miss, leg.name)
			}
		}
		t.Why = "no " + strings.Join(miss, ", no ")
		return t
	case len(exfilTools) < len(t.Exfil):
		t.Why = "a stdio server with egress holds a way out no policy on labels can close"
		return t
	}
	for _, x := range exfilTools {
		if d, _ := decideTool(eng, p, x, held, now, rules); d != ReachDenied && d != ReachApproval {
			t.Why = "once a session read " + strings.Join(held, " and ") + ", " + x.Name + " still sends out (" + d + ")"
			if g := eng.Guards(toolInput(p, x, held, now)); len(g) > 0 {
				t.Why += "; guarded per call by " + strings.Join(g, ", ")
			}
			return t
		}
	}
	t.Blocked = true
	t.Why = "every way out is denied or held for approval once a session carries " + strings.Join(held, " and ")
	return t
}
