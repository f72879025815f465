package policy

import (
	"context"
	"slices"
	"strings"

	"github.com/cedar-policy/cedar-go"
	cedarast "github.com/cedar-policy/cedar-go/ast"
	"github.com/cedar-policy/cedar-go/x/exp/batch"

	"github.com/cedar-policy/cedar-go/types"
	xast "github.com/cedar-policy/cedar-go/x/exp/ast"
)

// Rule is what posture and blast-radius read of one policy: its effect,
// its scope, and whether conditions narrow it.
type Rule struct {
	ID     string
	Forbid bool
	// Approval: a forbid annotated @approval (a person may lift it).
	Approval bool
	// AnyPrincipal, AnyAction, AnyResource: the scope leaves that part
	// open.
	AnyPrincipal, AnyAction, AnyResource bool
	// Conditions: the policy has when or unless clauses; Context: one of
	// them reads the request's context (arguments, labels, time, ...).
	Conditions, Context bool
	// Text is the policy's Cedar text.
	Text string
}

// Rules describes every policy of the set, in ID order.
func (s *Set) Rules() []Rule {
	out := make([]Rule, 0, len(s.idx.policies))
	for _, ip := range s.idx.policies {
		m := s.meta[ip.id]
		a := ip.ast
		text := string(ip.p.MarshalCedar())
		r := Rule{ID: m.id, Forbid: m.forbid, Approval: m.approval != "", Text: text,
			AnyPrincipal: isAll(a.Principal), AnyAction: isAll(a.Action), AnyResource: isAll(a.Resource),
			Conditions: len(a.Conditions) > 0}
		// A mention of context in the policy: its scope cannot hold one
		// (but in an entity's quoted ID), so its conditions do.
		r.Context = r.Conditions && strings.Contains(text, "context")
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b Rule) int { return strings.Compare(a.ID, b.ID) })
	return out
}

func isAll(n any) bool {
	_, ok := n.(xast.ScopeTypeAll)
	return ok
}

// contextLast reorders the conjuncts of a when clause's top-level
// conjunction so that those not reading the context come first: batch
// evaluation drops a whole condition that reads an ignored context, unless
// a conjunct before settles it (Cedar's && short-circuits).
func contextLast(n xast.IsNode) xast.IsNode {
	var flat []xast.IsNode
	var walk func(xast.IsNode)
	walk = func(n xast.IsNode) {
		if and, ok := n.(xast.NodeTypeAnd); ok {
			walk(and.Left)
			walk(and.Right)
			return
		}
		flat = append(flat, n)
	}
	walk(n)
	if len(flat) < 2 {
		return n
	}
	slices.SortStableFunc(flat, func(x, y xast.IsNode) int {
		cx, cy := readsContext(x), readsContext(y)
		switch {
		case cx == cy:
			return 0
		case cy:
			return -1
		}
		return 1
	})
	out := flat[0]
	for _, c := range flat[1:] {
		out = xast.NodeTypeAnd{BinaryNode: xast.BinaryNode{Left: out, Right: c}}
	}
	return out
}

func readsContext(n xast.IsNode) bool {
	found := false
	xast.Inspect(xast.NewNode(n), func(m xast.IsNode) bool {
		if v, ok := m.(xast.NodeTypeVariable); ok && v.Name == "context" {
			found = true
		}
		return !found
	})
	return found
}

// Guards returns the IDs of the forbid policies that may refuse in
// depending on its arguments or the session (argument provenance,
// labels): those whose scope matches and whose conditions some context
// satisfies. Each is checked as its permit twin with the context ignored
// (cedar-go's batch evaluation drops a permit's conditions on ignored
// values, and keeps those settled without them): a forbid whose
// conditions are false for this principal and resource whatever the
// context is no guard. An approval guard counts.
func (e *Engine) Guards(in *Input) []string {
	s := e.cur.Load()
	req, ents, sc, err := e.request(in, types.Record{})
	if err != nil {
		return nil
	}
	var out []string
	for pid, p := range s.idx.subset(sc).ps.All() {
		m := s.meta[pid]
		a := (*xast.Policy)(p.AST())
		if !m.forbid || len(a.Conditions) == 0 {
			continue
		}
		twin := *a
		twin.Effect = xast.EffectPermit
		twin.Conditions = make([]xast.ConditionType, len(a.Conditions))
		for i, c := range a.Conditions {
			twin.Conditions[i] = xast.ConditionType{Condition: c.Condition, Body: contextLast(c.Body)}
		}
		ps := cedar.NewPolicySet()
		ps.Add("twin", cedar.NewPolicyFromAST((*cedarast.Policy)(&twin)))
		fires := false
		err := batch.Authorize(context.Background(), ps, ents, batch.Request{Principal: req.Principal, Action: req.Action, Resource: req.Resource, Context: batch.Ignore()},
			func(r batch.Result) error { fires = r.Decision == cedar.Allow; return nil })
		if err != nil || fires {
			out = append(out, m.id)
		}
	}
	slices.Sort(out)
	return out
}
