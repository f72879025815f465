package policy

import (
	"encoding/binary"
	"slices"
	"strings"
	"sync"

	"github.com/cedar-policy/cedar-go/types"

	"github.com/portcullis-dev/portcullis/internal/identity"
)

// A request's entities are its principal's and its resource's, each with
// the entities it refers to (roles, user, task; upstream). They are
// immutable values and the same agents and targets recur on every call,
// so each is built once and shared (bounded by maxEntities): a request
// only points at two of them.

// builtEntity is one cached entity and those it refers to.
type builtEntity struct {
	uid types.EntityUID
	// ents holds uid's entity and the ones it refers to.
	ents []types.Entity
	// parents are uid's parents, sorted (the index's scope matching).
	parents []types.EntityUID
	// scope encodes uid and its parents for the policy index's subset key.
	scope string
}

func newBuiltEntity(build func(types.EntityMap) types.EntityUID) *builtEntity {
	m := types.EntityMap{}
	b := &builtEntity{uid: build(m)}
	for _, en := range m {
		b.ents = append(b.ents, en)
	}
	b.parents = sortedUIDs(m[b.uid].Parents)
	b.scope = scopeKey(b.uid, b.parents)
	return b
}

// scopeKey encodes an entity and its parents for the subset key.
func scopeKey(uid types.EntityUID, parents []types.EntityUID) string {
	k := appendUID(nil, uid)
	k = binary.AppendUvarint(k, uint64(len(parents)))
	for _, p := range parents {
		k = appendUID(k, p)
	}
	return string(k)
}

// keyCache maps keys to values built once, up to a bound (past it, values
// are built per request and not kept). A plain map under a read lock: a
// key looked up from a byte slice is not allocated.
type keyCache[V any] struct {
	mu sync.RWMutex
	m  map[string]V
}

// get returns the value cached under key, building (and keeping, while
// the cache holds fewer than max) it if there is none.
func (c *keyCache[V]) get(key []byte, max int, build func() V) V {
	c.mu.RLock()
	v, ok := c.m[string(key)]
	c.mu.RUnlock()
	if ok {
		return v
	}
	v = build()
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.m[string(key)]; ok {
		return old
	}
	if c.m == nil {
		c.m = map[string]V{}
	}
	if len(c.m) < max {
		c.m[string(key)] = v
	}
	return v
}

// entity returns the entity cached under key (agentKey, targetKey,
// upstreamKey), built by build if there is none.
func (e *Engine) entity(key []byte, build func(types.EntityMap) types.EntityUID) *builtEntity {
	return e.entities.get(key, maxEntities, func() *builtEntity { return newBuiltEntity(build) })
}

// requestEntities is the entity store of one request (types.EntityGetter):
// its principal's entities, then its resource's. Were one UID in both, the
// principal's is the one found: the fuller of the two (an agent acting on
// itself as a target has its roles only as the principal).
type requestEntities struct {
	principal, resource *builtEntity
}

// Get implements types.EntityGetter.
func (r *requestEntities) Get(uid types.EntityUID) (types.Entity, bool) {
	for _, b := range [2]*builtEntity{r.principal, r.resource} {
		for i := range b.ents {
			if b.ents[i].UID == uid {
				return b.ents[i], true
			}
		}
	}
	return types.Entity{}, false
}

// resourceParents returns the resource's parents and scope key as Cedar
// sees them: Get finds a UID in the principal's set first, so when that
// set holds the resource (an agent delegating to itself), the policy
// index must match the resource's scope against that entity's parents
// too, or a forbid scoped "resource in Role::..." would be left out of
// the subset while Cedar would apply it.
func (r *requestEntities) resourceParents() ([]types.EntityUID, string) {
	if r.resource.uid == r.principal.uid {
		return r.principal.parents, r.principal.scope
	}
	for i := range r.principal.ents {
		if en := &r.principal.ents[i]; en.UID == r.resource.uid {
			parents := sortedUIDs(en.Parents)
			return parents, scopeKey(en.UID, parents)
		}
	}
	return r.resource.parents, r.resource.scope
}

// The cache keys: a kind byte, then every field length-prefixed, so that
// two different agents or targets never share a key whatever bytes their
// names hold.

func appendField(k []byte, s string) []byte {
	k = binary.AppendUvarint(k, uint64(len(s)))
	return append(k, s...)
}

func appendUID(k []byte, u types.EntityUID) []byte {
	return appendField(appendField(k, string(u.Type)), string(u.ID))
}

func agentKey(k []byte, p *identity.Principal) []byte {
	k = append(k, 'A')
	k = appendField(k, p.Agent)
	k = appendField(k, p.User)
	k = appendField(k, p.Task)
	k = binary.AppendUvarint(k, uint64(len(p.Roles)))
	for _, r := range p.Roles {
		k = appendField(k, r)
	}
	return k
}

func upstreamKey(k []byte, name string) []byte {
	return appendField(append(k, 'U'), name)
}

func targetKey(k []byte, t *Target) []byte {
	k = append(k, 'T')
	k = appendField(k, t.Kind)
	k = appendField(k, t.ID)
	k = appendField(k, t.Upstream)
	var hints byte
	for i, h := range [3]bool{t.ReadOnly, t.Destructive, t.OpenWorld} {
		if h {
			hints |= 1 << i
		}
	}
	k = append(k, hints)
	k = binary.AppendUvarint(k, uint64(len(t.Classes)))
	for _, c := range t.Classes {
		k = appendField(k, c)
	}
	return k
}

func sortedUIDs(set types.EntityUIDSet) []types.EntityUID {
	out := slices.Collect(set.All())
	slices.SortFunc(out, func(a, b types.EntityUID) int { return strings.Compare(a.String(), b.String()) })
	return out
}
