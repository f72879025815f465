package gateway

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/grant"
	"github.com/portcullis-dev/portcullis/internal/reason"
	"github.com/portcullis-dev/portcullis/internal/store"
)

// CreateGrant records a just-in-time grant and audits it
// (`portcullis grant`). The agent must be configured.
func CreateGrant(ctx context.Context, cfg *config.Config, agent, tool, why, by string, d time.Duration) (grant.Grant, error) {
	if _, ok := cfg.Agent(agent); !ok {
		return grant.Grant{}, fmt.Errorf("grant: %w: %q", ErrUnknownAgent, agent)
	}
	g, err := grant.New(agent, tool, why, by, d, time.Now())
	if err != nil {
		return grant.Grant{}, err
	}
	st, err := store.Open(filepath.Join(DataDir(cfg), StoreFile))
	if err != nil {
		return grant.Grant{}, err
	}
	defer st.Close()
	// Audit first: a grant that could not be recorded is not given.
	if err := audit.WriteNow(ctx, st, grantEvent(g, reason.GrantCreated)); err != nil {
		return grant.Grant{}, err
	}
	return g, st.AddGrant(ctx, g)
}

// RevokeGrant ends a grant before its expiry and audits it.
func RevokeGrant(ctx context.Context, cfg *config.Config, id, by string) (grant.Grant, error) {
	st, err := store.Open(filepath.Join(DataDir(cfg), StoreFile))
	if err != nil {
		return grant.Grant{}, err
	}
	defer st.Close()
	g, err := st.RevokeGrant(ctx, id)
	if err != nil {
		return grant.Grant{}, err
	}
	e := grantEvent(g, reason.GrantRevoked)
	e.Detail += "; revoked by " + by
	return g, audit.WriteNow(ctx, st, e)
}

// ListGrants returns every grant (active only, if active).
func ListGrants(ctx context.Context, cfg *config.Config, active bool) ([]grant.Grant, error) {
	st, err := store.Open(filepath.Join(DataDir(cfg), StoreFile))
	if err != nil {
		return nil, err
	}
	defer st.Close()
	var at time.Time
	if active {
		at = time.Now()
	}
	return st.Grants(ctx, at)
}

func grantEvent(g grant.Grant, code reason.Code) *audit.Event {
	e := audit.New(audit.TypePrivilege, audit.OutcomeInfo, code, time.Now(), audit.Subject{Agent: g.Agent, Credential: g.ID})
	e.Target = g.Tool
	e.Detail = fmt.Sprintf("grant %s by %s until %s: %s", g.ID, g.GrantedBy, g.Expires.Format(time.RFC3339), g.Reason)
	return e
}
