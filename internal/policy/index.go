package policy

import (
	"slices"

	"github.com/cedar-policy/cedar-go"
	"github.com/cedar-policy/cedar-go/types"
	xast "github.com/cedar-policy/cedar-go/x/exp/ast"
)

// cedar-go evaluates every policy of a set for every request. With hundreds
// of policies that dominates, so a Set evaluates each request against the
// subset of policies whose scope (principal, action, resource) can match it.
// Leaving out a policy whose scope cannot match changes nothing: Cedar checks
// the scope before the conditions, so such a policy is neither satisfied nor
// erroring. Subsets are cached per (principal, roles, action, resource).

// maxSubsets bounds the cache; beyond it subsets are built per request.
const maxSubsets = 10000

type subset struct {
	ps, sans *cedar.PolicySet
}

type indexedPolicy struct {
	id       cedar.PolicyID
	p        *cedar.Policy
	ast      *xast.Policy
	approval bool
}

type index struct {
	policies []indexedPolicy
	cache    keyCache[*subset] // by scope key
}

func (ix *index) add(id cedar.PolicyID, p *cedar.Policy, approval bool) {
	ix.policies = append(ix.policies, indexedPolicy{id: id, p: p, ast: (*xast.Policy)(p.AST()), approval: approval})
}

// scope is what a request's scope is matched against: each entity with its
// parents.
type scope struct {
	principal, action, resource types.EntityUID
	pParents, rParents          []types.EntityUID
	// pScope and rScope encode the principal and the resource with their
	// parents (builtEntity.scope).
	pScope, rScope string
}

// key appends sc's subset cache key to k: the principal, the action and
// the resource, each with its parents, every part length-prefixed.
func (sc *scope) key(k []byte) []byte {
	k = appendField(k, sc.pScope)
	k = appendUID(k, sc.action)
	return appendField(k, sc.rScope)
}

func (ix *index) subset(sc *scope) *subset {
	var kb [512]byte
	return ix.cache.get(sc.key(kb[:0]), maxSubsets, func() *subset {
		sub := &subset{ps: cedar.NewPolicySet(), sans: cedar.NewPolicySet()}
		for _, ip := range ix.policies {
			if !principalMatches(ip.ast.Principal, sc.principal, sc.pParents) ||
				!actionMatches(ip.ast.Action, sc.action) ||
				!resourceMatches(ip.ast.Resource, sc.resource, sc.rParents) {
				continue
			}
			sub.ps.Add(ip.id, ip.p)
			if !ip.approval {
				sub.sans.Add(ip.id, ip.p)
			}
		}
		return sub
	})
}

func in(target types.EntityUID, self types.EntityUID, parents []types.EntityUID) bool {
	return target == self || slices.Contains(parents, target)
}

// entityMatches is the principal and resource scope test: the scope
// node types are the same for both.
func entityMatches(n any, e types.EntityUID, parents []types.EntityUID) bool {
	switch s := n.(type) {
	case xast.ScopeTypeAll:
		return true
	case xast.ScopeTypeEq:
		return s.Entity == e
	case xast.ScopeTypeIn:
		return in(s.Entity, e, parents)
	case xast.ScopeTypeIs:
		return s.Type == e.Type
	case xast.ScopeTypeIsIn:
		return s.Type == e.Type && in(s.Entity, e, parents)
	}
	return true // an unknown form: keep the policy
}

func principalMatches(n xast.IsPrincipalScopeNode, e types.EntityUID, parents []types.EntityUID) bool {
	return entityMatches(n, e, parents)
}

func resourceMatches(n xast.IsResourceScopeNode, e types.EntityUID, parents []types.EntityUID) bool {
	return entityMatches(n, e, parents)
}

func actionMatches(n xast.IsActionScopeNode, e types.EntityUID) bool {
	switch s := n.(type) {
	case xast.ScopeTypeAll:
		return true
	case xast.ScopeTypeEq:
		return s.Entity == e
	case xast.ScopeTypeIn:
		return s.Entity == e
	case xast.ScopeTypeInSet:
		return slices.Contains(s.Entities, e)
	}
	return true
}
