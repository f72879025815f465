package policy

import (
	"context"
	"encoding/binary"
	"errors"
	"sync/atomic"
	"time"

	"github.com/cedar-policy/cedar-go"
	"github.com/cedar-policy/cedar-go/types"
	"github.com/cedar-policy/cedar-go/x/exp/batch"

	"github.com/portcullis-dev/portcullis/internal/identity"
	"github.com/portcullis-dev/portcullis/internal/reason"
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
	ActionDelegate          = "delegate"
)

// Kinds of target.
const (
	KindTool     = "Tool"
	KindResource = "Resource"
	KindPrompt   = "Prompt"
	KindAgent    = "Agent"
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
	// UntrustedArguments name the arguments whose values first appeared in
	// untrusted tool output (argument provenance).
	UntrustedArguments []string
	// Provenance is the origin of the call's arguments by role
	// (provenance.Roles -> "trusted", "untrusted", "unseen"); a role no
	// argument has is absent.
	Provenance map[string]string
	// Findings are the screening detections in the arguments that a
	// screening rule acted on ("category" and "category:rule").
	Findings []string
	// RiskScore is the detection engine's score (0 until it runs).
	RiskScore int64
	// Now is when the request arrived; zero means time.Now().
	Now time.Time
	// BudgetLeft is the calls the principal's task has left (-1: no task).
	BudgetLeft int64
}

// Decision is the outcome of one evaluation.
type Decision struct {
	Allow bool
	// Code is the reason code shown to the caller on denial
	// (reason.NoPermit, Forbidden, PolicyError, or ApprovalRequired: it
	// would be allowed if a person approves). It says why in general
	// terms, never which policy: policy internals are for the audit log.
	Code reason.Code
	// Policies are the IDs of the policies that determined the decision.
	Policies []string
	// Reasons are the @reason annotations of those policies.
	Reasons []string
	// Errors are evaluation errors (policy IDs and messages) for the audit log.
	Errors []string
	// Version is the policy bundle version that decided.
	Version string
	// Approval is set (with Allow false and Code reason.ApprovalRequired) when only
	// @approval forbids stand between the request and an allow; it holds
	// their @approval texts.
	Approval []string
}

// Engine holds the current policy Set.
type Engine struct {
	cur atomic.Pointer[Set]
	// entities caches the agents and targets requests name (entities.go).
	entities keyCache[*builtEntity]
	// labelRecs caches context.session records by label set.
	labelRecs keyCache[types.Record]
	lastTime  atomic.Pointer[timeRec]
}

const maxEntities = 50000

type timeRec struct {
	unix int64
	rec  types.Record
}

// timeRecord is context.time, built once per second.
func (e *Engine) timeRecord(now time.Time) types.Record {
	if t := e.lastTime.Load(); t != nil && t.unix == now.Unix() {
		return t.rec
	}
	r := types.NewRecord(types.RecordMap{
		"hour": types.Long(now.Hour()), "weekday": types.Long(now.Weekday()), "unix": types.Long(now.Unix()),
	})
	e.lastTime.Store(&timeRec{unix: now.Unix(), rec: r})
	return r
}

var noTask = types.NewRecord(types.RecordMap{"id": types.String(""), "tools": types.NewSet(), "budget_left": types.Long(-1)})

func taskRecord(in *Input) types.Record {
	if in.Principal == nil || in.Principal.Task == "" {
		return noTask
	}
	tools := make([]types.Value, len(in.Principal.TaskTools))
	for i, t := range in.Principal.TaskTools {
		tools[i] = types.String(t)
	}
	return types.NewRecord(types.RecordMap{"id": types.String(in.Principal.Task), "tools": types.NewSet(tools...), "budget_left": types.Long(in.BudgetLeft)})
}

var noLabels = types.NewRecord(types.RecordMap{"labels": types.NewSet()})

// maxLabelRecords bounds the cached context.session records (label sets
// come from configuration: a deployment has few).
const maxLabelRecords = 1024

// sessionRecord is context.session for a session with labels (sorted),
// made once per label set: a session's labels rarely change, and every
// decision of the session needs them.
func (e *Engine) sessionRecord(labels []string) types.Record {
	if len(labels) == 0 {
		return noLabels
	}
	var kb [256]byte
	k := binary.AppendUvarint(kb[:0], uint64(len(labels)))
	for _, l := range labels {
		k = appendField(k, l)
	}
	return e.labelRecs.get(k, maxLabelRecords, func() types.Record {
		return types.NewRecord(types.RecordMap{"labels": stringSet(labels)})
	})
}

// RoleNames are the fields of context.roles (provenance.Roles; policy does
// not import the tracker).
var RoleNames = []string{"recipient", "destination", "amount", "target", "content"}

// noRoles is context.roles when no argument has a role.
var noRoles = makeRolesRecord(nil)

// rolesRecord is context.roles: every role, "" when no argument has it.
func rolesRecord(p map[string]string) types.Record {
	if len(p) == 0 {
		return noRoles
	}
	return makeRolesRecord(p)
}

func makeRolesRecord(p map[string]string) types.Record {
	m := make(types.RecordMap, len(RoleNames))
	for _, r := range RoleNames {
		m[types.String(r)] = types.String(p[r])
	}
	return types.NewRecord(m)
}

// emptySet is the empty set (shared: cedar values are immutable).
var emptySet = types.NewSet()

func stringSet(ss []string) types.Set {
	if len(ss) == 0 {
		return emptySet
	}
	vs := make([]types.Value, len(ss))
	for i, s := range ss {
		vs[i] = types.String(s)
	}
	return types.NewSet(vs...)
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
	d := Decision{Version: s.version, Code: reason.NoPermit}
	req, ents, sc, err := e.request(in, in.Arguments)
	if err != nil {
		d.Code, d.Errors = reason.PolicyError, []string{err.Error()}
		return d
	}
	sub := s.idx.subset(sc)
	dec, diag := cedar.Authorize(sub.ps, ents, req)
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
		d.Allow, d.Code = false, reason.PolicyError
	case dec == cedar.Allow:
		d.Allow, d.Code = true, ""
	case len(diag.Reasons) > 0:
		d.Code = reason.Forbidden
		if why := s.approvalOnly(diag); why != nil {
			// Only approval guards forbid it: would the rest allow it?
			if dec2, diag2 := cedar.Authorize(sub.sans, ents, req); dec2 == cedar.Allow && len(diag2.Errors) == 0 {
				d.Code, d.Approval = reason.ApprovalRequired, why
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
	req, ents, sc, err := e.request(in, types.Record{})
	if err != nil {
		return false
	}
	ctxRec := req.Context
	m := ctxRec.Map()
	m["arguments"] = batch.Ignore()
	visible := false
	err = batch.Authorize(ctx, s.idx.subset(sc).ps, ents, batch.Request{
		Principal: req.Principal, Action: req.Action, Resource: req.Resource,
		Context: types.NewRecord(m),
	}, func(r batch.Result) error {
		visible = r.Decision == cedar.Allow
		return nil
	})
	return err == nil && visible
}

var errNoPrincipal = errors.New("build request: no principal")

func (e *Engine) request(in *Input, args types.Record) (cedar.Request, types.EntityGetter, *scope, error) {
	var kb [256]byte // the cache keys are built here (no allocation when they fit)
	ents := &requestEntities{}
	switch {
	case in.Principal != nil:
		ents.principal = e.entity(agentKey(kb[:0], in.Principal), func(m types.EntityMap) types.EntityUID { return agentEntity(m, in.Principal) })
	case in.Upstream != "":
		ents.principal = e.entity(upstreamKey(kb[:0], in.Upstream), func(m types.EntityMap) types.EntityUID {
			uid := types.NewEntityUID("Upstream", types.String(in.Upstream))
			m[uid] = types.Entity{UID: uid}
			return uid
		})
	default:
		return cedar.Request{}, nil, nil, errNoPrincipal
	}
	t := &in.Target
	ents.resource = e.entity(targetKey(kb[:0], t), func(m types.EntityMap) types.EntityUID { return targetEntity(m, *t) })
	action := types.NewEntityUID("Action", types.String(in.Action))
	sc := &scope{principal: ents.principal.uid, action: action, resource: ents.resource.uid,
		pParents: ents.principal.parents, pScope: ents.principal.scope}
	sc.rParents, sc.rScope = ents.resourceParents()
	now := in.Now
	if now.IsZero() {
		now = time.Now()
	}
	now = now.UTC()
	ctx := types.NewRecord(types.RecordMap{
		"request_id":          types.String(in.RequestID),
		"session_id":          types.String(in.SessionID),
		"method":              types.String(in.Method),
		"arguments":           args,
		"time":                e.timeRecord(now),
		"session":             e.sessionRecord(in.Labels),
		"untrusted_arguments": stringSet(in.UntrustedArguments),
		"roles":               rolesRecord(in.Provenance),
		"findings":            stringSet(in.Findings),
		"risk_score":          types.Long(in.RiskScore),
		"task":                taskRecord(in),
	})
	return cedar.Request{
		Principal: sc.principal,
		Action:    action,
		Resource:  sc.resource,
		Context:   ctx,
	}, ents, sc, nil
}

func agentEntity(ents types.EntityMap, p *identity.Principal) types.EntityUID {
	uid := types.NewEntityUID("Agent", types.String(p.Agent))
	parents := make([]types.EntityUID, 0, len(p.Roles))
	for _, r := range p.Roles {
		parents = append(parents, types.NewEntityUID("Role", types.String(r)))
	}
	attrs := types.RecordMap{"name": types.String(p.Agent)}
	if p.User != "" {
		u := types.NewEntityUID("User", types.String(p.User))
		attrs["user"] = u
		ents[u] = types.Entity{UID: u}
	}
	if p.Task != "" {
		t := types.NewEntityUID("Task", types.String(p.Task))
		attrs["task"] = t
		ents[t] = types.Entity{UID: t}
	}
	ents[uid] = types.Entity{
		UID:        uid,
		Parents:    types.NewEntityUIDSet(parents...),
		Attributes: types.NewRecord(attrs),
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

// ReadsProvenance reports whether the current policies read argument
// provenance.
func (e *Engine) ReadsProvenance() bool { return e.cur.Load().provenance }
