package mcpproxy

import (
	"context"
	"errors"
	"testing"
	"time"
)

// countingLeaser grants from per-minute limits, as the store does, and
// counts the statements a gateway would send.
type countingLeaser struct {
	used  map[int64]int
	calls int
	err   error
}

func (c *countingLeaser) LeaseRate(_ context.Context, _ string, minute int64, limit, want int) (int, error) {
	c.calls++
	if c.err != nil {
		return 0, c.err
	}
	n := min(want, limit-c.used[minute])
	c.used[minute] += n
	return n, nil
}

func TestFleetRateLeasesShares(t *testing.T) {
	l := &countingLeaser{used: map[int64]int{}}
	f := NewFleetRate(l, 100) // shares of 5
	at := time.Unix(6000, 0)
	allowed := 0
	for i := 0; i < 150; i++ {
		ok, err := f.Allow(context.Background(), "a", at)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			allowed++
		}
	}
	if allowed != 100 || l.calls != 21 { // 20 shares, then one refused lease
		t.Fatalf("allowed %d with %d leases", allowed, l.calls)
	}
	// The next minute starts afresh.
	if ok, _ := f.Allow(context.Background(), "a", at.Add(time.Minute)); !ok {
		t.Fatal("refused in a new minute")
	}
	// A store that cannot be read is an error (the caller refuses).
	l.err = errors.New("down")
	f2 := NewFleetRate(l, 100)
	if ok, err := f2.Allow(context.Background(), "b", at); ok || err == nil {
		t.Fatalf("store down: %v %v", ok, err)
	}
}
