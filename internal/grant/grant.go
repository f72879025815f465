package grant

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Limits.
const (
	// MaxDuration bounds one grant: privileges are just in time, not standing.
	MaxDuration = 8 * time.Hour
	// RefreshInterval is how often the Cache re-reads the store.
	RefreshInterval = time.Second
	MaxReasonBytes  = 1024
)

// Grant is a time-bound permission for one agent to call one tool.
type Grant struct {
	ID        string
	Agent     string
	Tool      string // qualified: <upstream>__<tool>
	Reason    string
	GrantedBy string
	Created   time.Time
	Expires   time.Time
	Revoked   bool
}

// Active reports whether g is in force at now.
func (g Grant) Active(now time.Time) bool { return !g.Revoked && now.Before(g.Expires) }

// Store persists grants.
type Store interface {
	AddGrant(ctx context.Context, g Grant) error
	RevokeGrant(ctx context.Context, id string) (Grant, error)
	Grants(ctx context.Context, activeAt time.Time) ([]Grant, error)
}

// New validates and builds a grant starting at now.
func New(agent, tool, reason, by string, d time.Duration, now time.Time) (Grant, error) {
	switch {
	case agent == "" || tool == "":
		return Grant{}, errors.New("grant: agent and tool are required")
	case reason == "" || len(reason) > MaxReasonBytes:
		return Grant{}, fmt.Errorf("grant: a reason of at most %d bytes is required", MaxReasonBytes)
	case d <= 0 || d > MaxDuration:
		return Grant{}, fmt.Errorf("grant: duration %s outside (0, %s]", d, MaxDuration)
	case by == "" || by == agent:
		return Grant{}, errors.New("grant: the grantor must be named and cannot be the agent itself")
	}
	var id [8]byte
	if _, err := rand.Read(id[:]); err != nil {
		return Grant{}, err
	}
	return Grant{ID: "g-" + hex.EncodeToString(id[:]), Agent: agent, Tool: tool, Reason: reason, GrantedBy: by,
		Created: now.UTC(), Expires: now.Add(d).UTC()}, nil
}

// Cache is the gateway's view of active grants.
type Cache struct {
	store Store
	now   func() time.Time
	log   *slog.Logger
	// OnExpired is called once for each grant seen to expire.
	OnExpired func(Grant)

	refreshing sync.Mutex // one Refresh at a time (a poll and a fleet's change feed)
	mu         sync.RWMutex
	byKey      map[[2]string]Grant // (agent, tool) -> the grant that lasts longest
	active     map[string]Grant
}

// NewCache returns an empty cache; Refresh or Run fill it.
func NewCache(s Store, now func() time.Time, log *slog.Logger) *Cache {
	if now == nil {
		now = time.Now
	}
	return &Cache{store: s, now: now, log: log, byKey: map[[2]string]Grant{}, active: map[string]Grant{}}
}

// Lookup returns the grant that lets agent call tool now, if any.
func (c *Cache) Lookup(agent, tool string) (Grant, bool) {
	if c == nil {
		return Grant{}, false
	}
	c.mu.RLock()
	g, ok := c.byKey[[2]string{agent, tool}]
	c.mu.RUnlock()
	if !ok || !g.Active(c.now()) {
		return Grant{}, false
	}
	return g, true
}

// Refresh re-reads the active grants and reports the ones that ended.
func (c *Cache) Refresh(ctx context.Context) error {
	c.refreshing.Lock()
	defer c.refreshing.Unlock()
	now := c.now()
	gs, err := c.store.Grants(ctx, now)
	if err != nil {
		return err
	}
	byKey := map[[2]string]Grant{}
	active := map[string]Grant{}
	for _, g := range gs {
		if !g.Active(now) {
			continue
		}
		active[g.ID] = g
		k := [2]string{g.Agent, g.Tool}
		if cur, ok := byKey[k]; !ok || g.Expires.After(cur.Expires) {
			byKey[k] = g
		}
	}
	c.mu.Lock()
	prev := c.active
	c.byKey, c.active = byKey, active
	c.mu.Unlock()
	for id, g := range prev {
		if _, still := active[id]; !still && c.OnExpired != nil && !now.Before(g.Expires) {
			c.OnExpired(g)
		}
	}
	return nil
}

// Run refreshes every RefreshInterval until ctx ends. A failed refresh keeps
// the previous view, whose expiries are still enforced at every lookup.
func (c *Cache) Run(ctx context.Context) error {
	t := time.NewTicker(RefreshInterval)
	defer t.Stop()
	for {
		if err := c.Refresh(ctx); err != nil && ctx.Err() == nil {
			c.log.Error("refresh grants", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
