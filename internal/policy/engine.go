package policy

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/cedar-policy/cedar-go"
	"github.com/cedar-policy/cedar-go/types"
	"github.com/cedar-policy/cedar-go/x/exp/batch"

	"github.com/portcullis-dev/portcullis/internal/identity"
)

// Actions Portcullis asks Cedar about.
const (
	ActionCallTool          = "call_tool"
	ActionReadResource      = "read_resource"
	ActionSubscribeResource = "subscribe_resource"
	ActionGetPrompt         = "get_prompt"
	ActionSampling          = "sampling"
	ActionElicitation       = "elicitation"
	ActionListRoots         = "list_roots"
)

// Kinds of target.
const (
	KindTool     = "Tool"
	KindResource = "Resource"
	KindPrompt   = "Prompt"
	KindAgent    = "Agent"
)

// Reason codes shown to the agent. They say why in general terms, never which
// policy: policy internals are for the audit log.
const (
	CodeNoPermit    = "no_permit"
	CodeForbidden   = "forbidden_by_policy"
	CodePolicyError = "policy_error"
	// CodeApproval: the request would be allowed if a human approves it.
	CodeApproval = "approval_required"
)

// Target is what a request acts on.
type Target struct {
	Kind     string // KindTool, ...
	ID       string // namespaced tool or prompt name, resource URI, agent name
	Upstream string
	// Hints from MCP tool annotations (tools only).
	ReadOnly, Destructive, OpenWorld bool
	// Classes is the tool's classification (tools only); empty means the
	// default derived from the hints (see Classify).
	Classes []string
}

// Tool classes.
const (
	ClassReadOnly        = "read_only"
	ClassWrites          = "writes"
	ClassDeletes         = "deletes"
	ClassSendsExternally = "sends_externally"
	ClassMovesMoney      = "moves_money"
)

// Classify is the default classification of a tool from its hints.
func Classify(t Target) []string {
	if t.ReadOnly {
		return []string{ClassReadOnly}
	}
	c := []string{ClassWrites}
	if t.Destructive {
		c = append(c, ClassDeletes)
	}
	if t.OpenWorld {
		c = append(c, ClassSendsExternally)
	}
	return c
}

// Input is everything a decision depends on.
type Input struct {
	Principal *identity.Principal
	// Upstream is the principal for server-initiated requests (sampling...).
	Upstream  string
	Action    string
	Target    Target
	RequestID string
	SessionID string
	Method    string
	// Arguments are already converted with Arguments().
	Arguments types.Record
	// Labels are the session's data-flow labels.
	Labels []string
	// RiskScore is the detection engine's score (0 until it runs).
	RiskScore int64
	// Now is when the request arrived; zero means time.Now().
	Now time.Time
}

// Decision is the outcome of one evaluation.
type Decision struct {
	Allow bool
	// Code is the reason code shown to the caller on denial.
	Code string
	// Policies are the IDs of the policies that determined the decision.
	Policies []string
	// Reasons are the @reason annotations of those policies.
	Reasons []string
	// Errors are evaluation errors (policy IDs and messages) for the audit log.
	Errors []string
	// Version is the policy bundle version that decided.
	Version string
	// Approval is set (with Allow false and Code CodeApproval) when only
	// @approval forbids stand between the request and an allow; it holds
	// their @approval texts.
	Approval []string
}

// Engine holds the current policy Set.
type Engine struct {
	cur atomic.Pointer[Set]
}

// NewEngine returns an Engine serving s.
func NewEngine(s *Set) *Engine {
	e := &Engine{}
	e.cur.Store(s)
	return e
}

// Swap atomically replaces the Set and returns the previous one.
func (e *Engine) Swap(s *Set) *Set { return e.cur.Swap(s) }

// Current returns the Set in force.
func (e *Engine) Current() *Set { return e.cur.Load() }

// Decide evaluates in. It never returns an allow on error.
func (e *Engine) Decide(in *Input) Decision {
	s := e.cur.Load()
	d := Decision{Version: s.version, Code: CodeNoPermit}
	req, ents, err := request(in, in.Arguments)
	if err != nil {
		d.Code, d.Errors = CodePolicyError, []string{err.Error()}
		return d
	}
	dec, diag := cedar.Authorize(s.ps, ents, req)
	for _, r := range diag.Reasons {
		m := s.meta[r.PolicyID]
		d.Policies = append(d.Policies, m.id)
		if m.reason != "" {
			d.Reasons = append(d.Reasons, m.reason)
		}
	}
	forbidErred := false
	for _, de := range diag.Errors {
		m := s.meta[de.PolicyID]
		d.Errors = append(d.Errors, m.id+": "+de.Message)
		forbidErred = forbidErred || m.forbid
	}
	switch {
	case forbidErred:
		// A guard that cannot be evaluated must not lapse silently.
		d.Allow, d.Code = false, CodePolicyError
	case dec == cedar.Allow:
		d.Allow, d.Code = true, ""
	case len(diag.Reasons) > 0:
		d.Code = CodeForbidden
		if why := s.approvalOnly(diag); why != nil {
			// Only approval guards forbid it: would the rest allow it?
			if dec2, diag2 := cedar.Authorize(s.sansApproval, ents, req); dec2 == cedar.Allow && len(diag2.Errors) == 0 {
				d.Code, d.Approval = CodeApproval, why
				for _, r := range diag2.Reasons {
					d.Policies = append(d.Policies, s.meta[r.PolicyID].id)
				}
			}
		}
	}
	return d
}

// approvalOnly returns the @approval texts if every determining forbid of
// diag is an approval guard, else nil.
func (s *Set) approvalOnly(diag cedar.Diagnostic) []string {
	var why []string
	for _, r := range diag.Reasons {
		m := s.meta[r.PolicyID]
		if m.approval == "" {
			return nil
		}
		why = append(why, m.approval)
	}
	return why
}

// Visible reports whether some arguments could make in allowed: permits whose
// conditions depend on the arguments count as satisfiable, and forbids that
// depend on them are set aside. It decides what list results show an agent.
func (e *Engine) Visible(ctx context.Context, in *Input) bool {
	s := e.cur.Load()
	req, ents, err := request(in, types.Record{})
	if err != nil {
		return false
	}
	ctxRec := req.Context
	m := ctxRec.Map()
	m["arguments"] = batch.Ignore()
	visible := false
	err = batch.Authorize(ctx, s.ps, ents, batch.Request{
		Principal: req.Principal, Action: req.Action, Resource: req.Resource,
		Context: types.NewRecord(m),
	}, func(r batch.Result) error {
		visible = r.Decision == cedar.Allow
		return nil
	})
	return err == nil && visible
}

var errNoPrincipal = errors.New("build request: no principal")

func request(in *Input, args types.Record) (cedar.Request, types.EntityMap, error) {
	ents := types.EntityMap{}
	var principal types.EntityUID
	switch {
	case in.Principal != nil:
		principal = agentEntity(ents, in.Principal)
	case in.Upstream != "":
		principal = types.NewEntityUID("Upstream", types.String(in.Upstream))
		ents[principal] = types.Entity{UID: principal}
	default:
		return cedar.Request{}, nil, errNoPrincipal
	}
	resource := targetEntity(ents, in.Target)
	now := in.Now
	if now.IsZero() {
		now = time.Now()
	}
	now = now.UTC()
	labels := make([]types.Value, len(in.Labels))
	for i, l := range in.Labels {
		labels[i] = types.String(l)
	}
	ctx := types.NewRecord(types.RecordMap{
		"request_id": types.String(in.RequestID),
		"session_id": types.String(in.SessionID),
		"method":     types.String(in.Method),
		"arguments":  args,
		"time": types.NewRecord(types.RecordMap{
			"hour": types.Long(now.Hour()), "weekday": types.Long(now.Weekday()), "unix": types.Long(now.Unix()),
		}),
		"session":    types.NewRecord(types.RecordMap{"labels": types.NewSet(labels...)}),
		"risk_score": types.Long(in.RiskScore),
	})
	return cedar.Request{
		Principal: principal,
		Action:    types.NewEntityUID("Action", types.String(in.Action)),
		Resource:  resource,
		Context:   ctx,
	}, ents, nil
}

func agentEntity(ents types.EntityMap, p *identity.Principal) types.EntityUID {
	uid := types.NewEntityUID("Agent", types.String(p.Agent))
	parents := make([]types.EntityUID, 0, len(p.Roles))
	for _, r := range p.Roles {
		parents = append(parents, types.NewEntityUID("Role", types.String(r)))
	}
	ents[uid] = types.Entity{
		UID:        uid,
		Parents:    types.NewEntityUIDSet(parents...),
		Attributes: types.NewRecord(types.RecordMap{"name": types.String(p.Agent)}),
	}
	return uid
}

func targetEntity(ents types.EntityMap, t Target) types.EntityUID {
	uid := types.NewEntityUID(types.EntityType(t.Kind), types.String(t.ID))
	up := types.NewEntityUID("Upstream", types.String(t.Upstream))
	attrs := types.RecordMap{"upstream": types.String(t.Upstream)}
	switch t.Kind {
	case KindTool:
		attrs["name"] = types.String(t.ID)
		attrs["read_only_hint"] = types.Boolean(t.ReadOnly)
		attrs["destructive_hint"] = types.Boolean(t.Destructive)
		attrs["open_world_hint"] = types.Boolean(t.OpenWorld)
		classes := t.Classes
		if len(classes) == 0 {
			classes = Classify(t)
		}
		cv := make([]types.Value, len(classes))
		for i, c := range classes {
			cv[i] = types.String(c)
		}
		attrs["classification"] = types.NewSet(cv...)
	case KindPrompt:
		attrs["name"] = types.String(t.ID)
	case KindResource:
		attrs["uri"] = types.String(t.ID)
	case KindAgent:
		attrs = types.RecordMap{"name": types.String(t.ID)}
		ents[uid] = types.Entity{UID: uid, Attributes: types.NewRecord(attrs)}
		return uid
	}
	ents[up] = types.Entity{UID: up}
	ents[uid] = types.Entity{UID: uid, Parents: types.NewEntityUIDSet(up), Attributes: types.NewRecord(attrs)}
	return uid
}

// Version is the version of the Set in force.
func (e *Engine) Version() string { return e.cur.Load().version }
