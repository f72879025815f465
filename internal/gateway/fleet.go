package gateway

import (
	"context"
	"fmt"
	"time"

	"github.com/portcullis-dev/portcullis/internal/mcpproxy"
)

// A fleet: gateways sharing one PostgreSQL store (store.postgres). The
// audit log, revocations (re-read every authn.RevocationRefresh),
// approvals, grants, pins and policy pointers are shared through the
// store's tables; task budgets are counted there too (below), and sessions
// are kept there (mcpproxy/session_store.go) with their containments
// (contain.go). Detection windows stay with the gateway serving them
// (docs/deployment.md).

// fleet reports whether this gateway shares its store with others.
func (g *Gateway) fleet() bool { return g.store.Backend() == "postgres" }

// taskBudgets counts task budgets in the shared store for a fleet (one
// atomic statement a task-scoped call), or in this process otherwise.
func (g *Gateway) taskBudgets() mcpproxy.TaskBudgets {
	if g.fleet() {
		return g.store
	}
	return nil
}

// pruneBudgets forgets, every hour, the budgets of task tokens that
// cannot be used any more (untouched for longer than the longest token
// lifetime, auth.max_ttl, and the verification leeway) and the rate
// windows of minutes more than an hour old.
func (g *Gateway) pruneBudgets(ctx context.Context) error {
	every(ctx, time.Hour, func() {
		before := time.Now().Add(-g.cfg.Auth.MaxTTL.D() - time.Hour)
		if n, err := g.store.PruneBudgets(ctx, before); err != nil {
			g.log.Warn("task budgets not pruned", "err", err)
		} else if n > 0 {
			g.log.Info("task budgets of expired tokens pruned", "tokens", n)
		}
		if err := g.store.PruneRates(ctx, time.Now().Add(-time.Hour).Unix()/60); err != nil {
			g.log.Warn("rate windows not pruned", "err", err)
		}
	})
	return nil
}

// FleetRevocationsMaxAge is how long a fleet's gateway may go without
// reading the shared revocations before it refuses every credential
// (after FleetSyncStale, /readyz has already taken it out of rotation).
const FleetRevocationsMaxAge = 5 * time.Second

// FleetSyncStale is how long a fleet's gateway may go without reading the
// shared revocations before /readyz takes it out of rotation: it could be
// serving an agent revoked through another gateway.
const FleetSyncStale = 2 * time.Second

// fleetSync is /readyz's line on the shared store, and whether this
// gateway is in sync with it.
func (g *Gateway) fleetSync() (string, bool) {
	at := g.revs.Synced()
	if at.IsZero() {
		return "fleet: revocations never read from the shared store", false
	}
	age := time.Since(at)
	if age > FleetSyncStale {
		return fmt.Sprintf("fleet: revocations last read from the shared store %v ago (stale after %v)", age.Round(time.Millisecond), FleetSyncStale), false
	}
	return fmt.Sprintf("fleet: postgres store, revocations read %v ago", age.Round(time.Millisecond)), true
}

// followChanges applies the fleet's change feed: what another gateway (or
// the CLI) changes in the shared store is read here at once, not at the
// next poll. The polls go on regardless: a missed notification delays a
// change by one poll, never loses it.
func (g *Gateway) followChanges(ctx context.Context) error {
	kick := func(c chan struct{}) {
		select {
		case c <- struct{}{}:
		default: // one is pending already
		}
	}
	lost := func(msg string, err error) { g.log.Warn(msg, "err", err) }
	g.store.Changes(ctx, lost, func(table string) {
		switch table {
		case "revocations", "agent_instances":
			if err := g.revs.Refresh(ctx, g.store); err != nil && ctx.Err() == nil {
				g.log.Warn("revocations not read after a change", "err", err)
			}
		case "grants":
			if err := g.grants.Refresh(ctx); err != nil && ctx.Err() == nil {
				g.log.Warn("grants not read after a change", "err", err)
			}
		case "tool_pins":
			kick(g.pinsKick)
		case "policy_pointers":
			kick(g.policyKick)
		case "containments":
			g.reloadContainments(ctx)
		}
		// approvals: a held call reads its request every
		// approval.PollInterval (200 ms).
	})
	return nil
}

// fleetRate caps each agent's calls per minute across the fleet
// (limits.agent_calls_per_minute), leased in shares from the store.
func (g *Gateway) fleetRate() *mcpproxy.FleetRate {
	if !g.fleet() || g.cfg.Limits.AgentCallsPerMinute <= 0 {
		return nil
	}
	return mcpproxy.NewFleetRate(g.store, g.cfg.Limits.AgentCallsPerMinute)
}

// runExport runs the audit exporters: in a fleet, on one gateway at a time
// (a lease in the shared store, taken over by another gateway when its
// holder stops or loses the database), so that a sink receives the fleet's
// one log once, in order.
func (g *Gateway) runExport(ctx context.Context) error {
	if !g.fleet() || len(g.exporter.Sinks) == 0 {
		return g.exporter.Run(ctx)
	}
	for ctx.Err() == nil {
		lost, release, ok, err := g.store.Lease(ctx, "audit-export")
		if err != nil && ctx.Err() == nil {
			g.log.Warn("audit export lease unavailable", "err", err)
		}
		if !ok {
			select {
			case <-ctx.Done():
			case <-time.After(5 * time.Second):
			}
			continue
		}
		ectx, cancel := context.WithCancel(ctx)
		go func() {
			select {
			case <-lost:
				g.log.Warn("audit export lease lost; another gateway takes over")
			case <-ectx.Done():
			}
			cancel()
		}()
		g.exporter.Run(ectx)
		cancel()
		release()
	}
	return nil
}
