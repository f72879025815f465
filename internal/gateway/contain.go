package gateway

import (
	"context"
	"fmt"
	"time"

	"github.com/portcullis-dev/portcullis/internal/mcpproxy"
	"github.com/portcullis-dev/portcullis/internal/store"
)

// Containment (the response to an alert) holds at once in this gateway
// and is written to the store, where it outlives the gateway and reaches
// the others of a fleet (the change feed, and a re-read every second): a
// session held back does not get away by moving to another gateway, or by
// waiting for a restart. A write the store refuses is retried every second
// until it takes, and /readyz fails meanwhile. Releases lift both.

// contain holds back session (or, session empty, every session of agent)
// at level.
func (g *Gateway) contain(session, agent string, level mcpproxy.Containment) {
	g.proxy.Contain(session, agent, level)
	c := store.Containment{Session: session, Agent: agent, Level: int(level), At: time.Now()}
	if err := g.writeContainment(c); err != nil {
		g.log.Error("containment not written to the store: held in this gateway only until it is; retrying", "session", session, "agent", agent, "err", err)
		g.unwritten.Add(1)
		go g.retryContainment(c)
	}
}

func (g *Gateway) writeContainment(c store.Containment) error {
	ctx, cancel := context.WithTimeout(g.bgCtx, 5*time.Second)
	defer cancel()
	return g.store.Contain(ctx, c)
}

// retryContainment writes c every second until the store takes it or the
// gateway stops.
func (g *Gateway) retryContainment(c store.Containment) {
	defer g.unwritten.Add(-1)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-g.bgCtx.Done():
			return
		case <-t.C:
		}
		if err := g.writeContainment(c); err == nil {
			g.log.Info("containment written to the store", "session", c.Session, "agent", c.Agent)
			return
		}
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
	g.reloadContainments(ctx)
}

// loadContainments reads the store's containments into the proxy; reads
// are serialised, so an older read never replaces a newer one.
func (g *Gateway) loadContainments(ctx context.Context) error {
	g.containMu.Lock()
	defer g.containMu.Unlock()
	cs, err := g.store.Containments(ctx)
	if err != nil {
		return fmt.Errorf("read containments: %w", err)
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
	return nil
}

// reloadContainments is loadContainments from a background task: a
// failure is logged (the previous read stands; the next one retries).
func (g *Gateway) reloadContainments(ctx context.Context) {
	if err := g.loadContainments(ctx); err != nil && ctx.Err() == nil {
		g.log.Warn("containments not read from the store", "err", err)
	}
}

// keepSessions looks after what the store keeps of sessions: in a fleet,
// containments read every second (the change feed brings them sooner);
// sessions idle for an hour past the idle timeout forgotten every hour
// (they can no longer be taken up).
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
		g.reloadContainments(ctx)
		if time.Since(lastPrune) > time.Hour {
			lastPrune = time.Now()
			prune()
		}
	})
	return nil
}

// containedSessions is how many of agent's sessions were contained since
// since, by any gateway of the fleet (escalation counts them all).
func (g *Gateway) containedSessions(agent string, since time.Time) int {
	ctx, cancel := context.WithTimeout(g.bgCtx, 5*time.Second)
	defer cancel()
	n, err := g.store.ContainedSessions(ctx, agent, since)
	if err != nil {
		g.log.Warn("contained sessions not counted in the store; this gateway's count stands", "agent", agent, "err", err)
	}
	return n
}
