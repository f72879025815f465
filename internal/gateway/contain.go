package gateway

import (
	"context"
	"time"

	"github.com/portcullis-dev/portcullis/internal/mcpproxy"
	"github.com/portcullis-dev/portcullis/internal/store"
)

// Containment (the response to an alert) holds at once in this gateway
// and is written to the store, where it outlives the gateway and reaches
// the others of a fleet (the change feed, and a re-read every second): a
// session held back does not get away by moving to another gateway, or by
// waiting for a restart. Releases lift both.

// contain holds back session (or, session empty, every session of agent)
// at level.
func (g *Gateway) contain(session, agent string, level mcpproxy.Containment) {
	g.proxy.Contain(session, agent, level)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := g.store.Contain(ctx, store.Containment{Session: session, Agent: agent, Level: int(level), At: time.Now()}); err != nil {
		g.log.Error("containment not written to the store: it holds in this gateway only", "session", session, "agent", agent, "err", err)
	}
}

// uncontain lifts the containment of session (or, session empty, of
// agent).
func (g *Gateway) uncontain(session, agent string) {
	g.proxy.Release(session, agent)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := g.store.Uncontain(ctx, session, agent); err != nil {
		g.log.Error("containment release not written to the store", "session", session, "agent", agent, "err", err)
	}
	g.loadContainments(ctx)
}

// loadContainments reads the store's containments into the proxy.
func (g *Gateway) loadContainments(ctx context.Context) {
	cs, err := g.store.Containments(ctx)
	if err != nil {
		if ctx.Err() == nil {
			g.log.Warn("containments not read from the store", "err", err)
		}
		return
	}
	sessions, agents := map[string]mcpproxy.Containment{}, map[string]mcpproxy.Containment{}
	for _, c := range cs {
		if c.Session != "" {
			sessions[c.Session] = max(sessions[c.Session], mcpproxy.Containment(c.Level))
		} else {
			agents[c.Agent] = max(agents[c.Agent], mcpproxy.Containment(c.Level))
		}
	}
	g.proxy.SetStoredContainment(sessions, agents)
}

// keepSessions looks after what the store keeps of sessions: in a fleet,
// containments read every second (the change feed brings them sooner;
// startBackground reads them first); sessions idle for an hour past the
// idle timeout forgotten every hour (they can no longer be taken up).
func (g *Gateway) keepSessions(ctx context.Context) error {
	prune := func() {
		before := time.Now().Add(-g.cfg.Limits.SessionIdleTimeout.D() - time.Hour)
		if n, err := g.store.PruneSessions(ctx, before); err != nil {
			g.log.Warn("stored sessions not pruned", "err", err)
		} else if n > 0 {
			g.log.Info("idle sessions forgotten", "sessions", n)
		}
	}
	prune()
	if !g.fleet() {
		every(ctx, time.Hour, prune)
		return nil
	}
	lastPrune := time.Now()
	every(ctx, time.Second, func() {
		g.loadContainments(ctx)
		if time.Since(lastPrune) > time.Hour {
			lastPrune = time.Now()
			prune()
		}
	})
	return nil
}
