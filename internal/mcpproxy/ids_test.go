package mcpproxy

import (
	"math/rand/v2"
	"regexp"
	"testing"
	"time"

	"github.com/portcullis-dev/portcullis/internal/telemetry"
)

// IDs made a millisecond or more apart sort in the order they were made
// (the audit table's indexes depend on it), whatever the timestamps'
// bytes, and IDs made in the same millisecond differ.
func TestIDsAreTimeOrdered(t *testing.T) {
	reqForm := regexp.MustCompile(`^[0-9A-V]{24}$`)
	r := rand.New(rand.NewPCG(1, 2))
	for range 10_000 {
		t1 := time.UnixMilli(r.Int64N(1 << 47))
		t2 := t1.Add(time.Duration(1+r.Int64N(1<<r.IntN(40))) * time.Millisecond)
		if a, b := requestIDAt(t1), requestIDAt(t2); a >= b || !reqForm.MatchString(a) {
			t.Fatalf("request IDs at %v and %v: %q, %q", t1, t2, a, b)
		}
		a, b := traceIDAt(t1), traceIDAt(t2)
		if a >= b {
			t.Fatalf("trace IDs at %v and %v: %q, %q", t1, t2, a, b)
		}
		if tc, ok := telemetry.ParseTraceContext(childTraceparent(a, "")); !ok || tc.TraceID != a {
			t.Fatalf("trace ID %q is not a W3C trace ID", a)
		}
	}
	now := time.Now()
	seen := map[string]bool{}
	for range 10_000 {
		id, tr := requestIDAt(now), traceIDAt(now)
		if seen[id] || seen[tr] {
			t.Fatalf("an ID was made twice in one millisecond: %q %q", id, tr)
		}
		seen[id], seen[tr] = true, true
	}
}
