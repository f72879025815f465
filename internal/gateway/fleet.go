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
// store's tables; task budgets are counted there too (below). Sessions,
// rate caps and detection windows stay with the gateway serving them
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
// cannot be used any more: untouched for longer than the longest token
// lifetime (auth.max_ttl) and the verification leeway.
func (g *Gateway) pruneBudgets(ctx context.Context) error {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		before := time.Now().Add(-g.cfg.Auth.MaxTTL.D() - time.Hour)
		if n, err := g.store.PruneBudgets(ctx, before); err != nil {
			g.log.Warn("task budgets not pruned", "err", err)
		} else if n > 0 {
			g.log.Info("task budgets of expired tokens pruned", "tokens", n)
		}
	}
}

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
