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

	mu     sync.Mutex
	leases map[string]*rateLease
}

type rateLease struct {
	minute int64
	left   int
	spent  bool // the fleet's calls of this minute are all taken
}

// maxLeases bounds the agents tracked at once.
const maxLeases = 100_000

// NewFleetRate returns a cap of perMinute calls per agent leased from l.
func NewFleetRate(l RateLeaser, perMinute int) *FleetRate {
	return &FleetRate{leaser: l, limit: perMinute, share: min(max(perMinute/20, 1), 100), leases: map[string]*rateLease{}}
}

// Allow takes one of agent's calls of the minute of now. An error reading
// the store is the caller's to refuse on.
func (f *FleetRate) Allow(ctx context.Context, agent string, now time.Time) (bool, error) {
	minute := now.Unix() / 60
	f.mu.Lock()
	defer f.mu.Unlock()
	l := f.leases[agent]
	if l == nil || l.minute != minute {
		if len(f.leases) >= maxLeases {
			for a, x := range f.leases {
				if x.minute != minute {
					delete(f.leases, a)
				}
			}
		}
		if len(f.leases) >= maxLeases {
			return false, nil // fail closed rather than forget
		}
		l = &rateLease{minute: minute}
		f.leases[agent] = l
	}
	if l.spent {
		return false, nil // until the next minute, without asking the store
	}
	if l.left == 0 {
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
