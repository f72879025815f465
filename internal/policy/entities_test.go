package policy

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/portcullis-dev/portcullis/internal/identity"
)

// list splits a fuzzed string into a list (commas), empty for "".
func list(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// FuzzCacheKeysAreInjective: two agents, or two targets, share a cache key
// only when every field the cached entity is built from is the same.
func FuzzCacheKeysAreInjective(f *testing.F) {
	f.Add("a", "", "", "reader\x00writer", "a", "", "", "reader,writer", "tool", "x", "u\x00y", "x\x00u", "y", byte(0), byte(0), "", "")
	f.Add("a", "u\x00t", "", "", "a", "u", "t", "", "tool", "x", "u", "x", "u", byte(1), byte(3), "writes,deletes", "writes\x00deletes")
	f.Add("a", "", "", "r", "a", "", "", "r", "tool", "x", "u", "x", "u", byte(2), byte(2), "writes", "writes")
	f.Fuzz(func(t *testing.T, a1, u1, t1, r1, a2, u2, t2, r2, kind, id1, up1, id2, up2 string, h1, h2 byte, c1, c2 string) {
		p1 := &identity.Principal{Agent: a1, User: u1, Task: t1, Roles: list(r1)}
		p2 := &identity.Principal{Agent: a2, User: u2, Task: t2, Roles: list(r2)}
		same := a1 == a2 && u1 == u2 && t1 == t2 && slices.Equal(p1.Roles, p2.Roles)
		if got := bytes.Equal(agentKey(nil, p1), agentKey(nil, p2)); got != same {
			t.Fatalf("agents %+v and %+v: same key %v, same agent %v", p1, p2, got, same)
		}
		target := func(id, up string, h byte, cl []string) *Target {
			return &Target{Kind: kind, ID: id, Upstream: up, ReadOnly: h&1 != 0, Destructive: h&2 != 0, OpenWorld: h&4 != 0, Classes: cl}
		}
		x, y := target(id1, up1, h1&7, list(c1)), target(id2, up2, h2&7, list(c2))
		same = x.Kind == y.Kind && x.ID == y.ID && x.Upstream == y.Upstream && h1&7 == h2&7 && slices.Equal(x.Classes, y.Classes)
		if got := bytes.Equal(targetKey(nil, x), targetKey(nil, y)); got != same {
			t.Fatalf("targets %+v and %+v: same key %v, same target %v", x, y, got, same)
		}
		if !bytes.Equal(upstreamKey(nil, up1), upstreamKey(nil, up2)) != (up1 != up2) {
			t.Fatalf("upstreams %q and %q", up1, up2)
		}
	})
}
