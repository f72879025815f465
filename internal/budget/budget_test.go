package budget

import (
	"testing"
	"time"

	"github.com/portcullis-dev/portcullis/internal/reason"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func TestRateLimit(t *testing.T) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	k := New(Limits{PerMinute: 60}, c.now)
	for i := 0; i < 60; i++ {
		if r, _ := k.Admit("a", "t", string(rune(i))); r != "" {
			t.Fatalf("call %d refused: %s", i, r)
		}
	}
	if r, _ := k.Admit("a", "t", "x"); r != reason.RateLimited {
		t.Fatalf("61st call in a second: %q", r)
	}
	if r, _ := k.Admit("b", "t", "x"); r != "" {
		t.Fatalf("another agent is limited too: %q", r)
	}
	c.t = c.t.Add(time.Second) // one token back
	if r, _ := k.Admit("a", "t", "y"); r != "" {
		t.Fatalf("after refill: %q", r)
	}
}

func TestBreakerOnRepeatedCalls(t *testing.T) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	k := New(Limits{RepeatLimit: 3, RepeatWindow: time.Minute, Cooldown: 5 * time.Minute}, c.now)
	for i := 0; i < 3; i++ {
		if r, _ := k.Admit("a", "send", "same"); r != "" {
			t.Fatalf("call %d: %s", i, r)
		}
	}
	r, tripped := k.Admit("a", "send", "same")
	if r != reason.BreakerOpen || !tripped {
		t.Fatalf("4th identical call: %q tripped=%v", r, tripped)
	}
	if r, tripped := k.Admit("a", "send", "different"); r != reason.BreakerOpen || tripped {
		t.Fatalf("open breaker covers the tool: %q %v", r, tripped)
	}
	if r, _ := k.Admit("a", "read", "same"); r != "" {
		t.Fatalf("other tools stay open: %q", r)
	}
	c.t = c.t.Add(5*time.Minute + time.Second)
	if r, _ := k.Admit("a", "send", "same"); r != "" {
		t.Fatalf("after cool-down: %q", r)
	}
	// Spread out, the same call never trips.
	k2 := New(Limits{RepeatLimit: 3, RepeatWindow: time.Minute, Cooldown: time.Minute}, c.now)
	for i := 0; i < 10; i++ {
		c.t = c.t.Add(25 * time.Second)
		if r, _ := k2.Admit("a", "send", "same"); r != "" {
			t.Fatalf("paced call %d: %s", i, r)
		}
	}
}
