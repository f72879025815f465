package mcpproxy

import (
	"context"
	"sync"
	"time"
)

// RateLeaser grants an agent's calls of one minute out of a fleet-wide
// limit (the fleet's store).
type RateLeaser interface {
	LeaseRate(ctx context.Context, agent string, minute int64, limit, want int) (int, error)
}

// FleetRate caps each agent's calls per minute across every gateway of a
// fleet. The count is kept in the shared store, but the hot path stays off
// it: a gateway leases a share of the minute's calls (a twentieth of the
// limit, at most 100) and spends it locally, leasing again when it runs
// out, so a busy agent costs one statement per share, not per call. A
// share leased and not spent is lost to the other gateways for that
// minute: the fleet never exceeds the limit, and an agent spread over n
// gateways may be refused up to n shares early. Minutes are fixed windows
// (a burst across a minute's edge may reach twice the limit within 60 s);
// each gateway's own smoother cap (budget.Keeper) still applies.
type FleetRate struct {
	leaser RateLeaser
	limit  int
	share  int

	mu     sync.Mutex // guards leases (the map), never held across the store
	leases map[string]*rateLease
}

// rateLease is one agent's share of the current minute. Its own lock is
// held while leasing from the store: one agent's calls on this gateway
// wait for that statement, other agents' do not.
type rateLease struct {
	mu     sync.Mutex
	minute int64
	left   int
	spent  bool // the fleet's calls of this minute are all taken
}

// maxLeases bounds the agents tracked at once.
const maxLeases = 100_000

// leaseTimeout bounds one lease from the store.
const leaseTimeout = 5 * time.Second

// NewFleetRate returns a cap of perMinute calls per agent leased from l.
func NewFleetRate(l RateLeaser, perMinute int) *FleetRate {
	return &FleetRate{leaser: l, limit: perMinute, share: min(max(perMinute/20, 1), 100), leases: map[string]*rateLease{}}
}

// Allow takes one of agent's calls of the minute of now. An error reading
// the store is the caller's to refuse on.
func (f *FleetRate) Allow(ctx context.Context, agent string, now time.Time) (bool, error) {
	minute := now.Unix() / 60
	l, ok := f.lease(agent, minute)
	if !ok {
		return false, nil // fail closed rather than forget
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.minute != minute {
		l.minute, l.left, l.spent = minute, 0, false
	}
	if l.spent {
		return false, nil // until the next minute, without asking the store
	}
	if l.left == 0 {
		ctx, cancel := context.WithTimeout(ctx, leaseTimeout)
		defer cancel()
		n, err := f.leaser.LeaseRate(ctx, agent, minute, f.limit, f.share)
		if err != nil {
			return false, err
		}
		if n == 0 {
			l.spent = true
			return false, nil
		}
		l.left = n
	}
	l.left--
	return true, nil
}

// lease finds (or makes) agent's lease; false when too many agents are
// tracked even after forgetting those of earlier minutes.
func (f *FleetRate) lease(agent string, minute int64) (*rateLease, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if l := f.leases[agent]; l != nil {
		return l, true
	}
	if len(f.leases) >= maxLeases {
		for a, x := range f.leases {
			if x.mu.TryLock() {
				if x.minute != minute {
					delete(f.leases, a)
				}
				x.mu.Unlock()
			}
		}
		if len(f.leases) >= maxLeases {
			return nil, false
		}
	}
	l := &rateLease{minute: minute}
	f.leases[agent] = l
	return l, true
}
