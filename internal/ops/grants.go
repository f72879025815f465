package ops

import (
	"context"
	"fmt"
	"time"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/grant"
	"github.com/portcullis-dev/portcullis/internal/reason"
)

// CreateGrant records a just-in-time grant and audits it
// (`portcullis grant`). The agent must be configured.
func (o *Ops) CreateGrant(ctx context.Context, agent, tool, why, by string, d time.Duration) (grant.Grant, error) {
	if _, ok := o.cfg.Agent(agent); !ok {
		return grant.Grant{}, fmt.Errorf("grant: %w: %q", config.ErrUnknownAgent, agent)
	}
	g, err := grant.New(agent, tool, why, by, d, time.Now())
	if err != nil {
		return grant.Grant{}, err
	}
	st := o.st
	// Audit first: a grant that could not be recorded is not given.
	if err := audit.WriteNow(ctx, st, GrantEvent(g, reason.GrantCreated)); err != nil {
		return grant.Grant{}, err
	}
	return g, st.AddGrant(ctx, g)
}

// RevokeGrant ends a grant before its expiry and audits it.
func (o *Ops) RevokeGrant(ctx context.Context, id, by string) (grant.Grant, error) {
	if err := attributed(by); err != nil {
		return grant.Grant{}, err
	}
	st := o.st
	g, err := st.RevokeGrant(ctx, id)
	if err != nil {
		return grant.Grant{}, err
	}
	e := GrantEvent(g, reason.GrantRevoked)
	e.Detail += "; revoked by " + by
	return g, audit.WriteNow(ctx, st, e)
}

// ListGrants returns every grant (active only, if active).
func (o *Ops) ListGrants(ctx context.Context, active bool) ([]grant.Grant, error) {
	st := o.st
	var at time.Time
	if active {
		at = time.Now()
	}
	return st.Grants(ctx, at)
}

// GrantEvent is the audit event of a grant created, revoked or expired.
func GrantEvent(g grant.Grant, code reason.Code) *audit.Event {
	e := audit.New(audit.TypePrivilege, audit.OutcomeInfo, code, time.Now(), audit.Subject{Agent: g.Agent, Credential: g.ID})
	e.Target = g.Tool
	e.Detail = fmt.Sprintf("grant %s by %s until %s: %s", g.ID, g.GrantedBy, g.Expires.Format(time.RFC3339), g.Reason)
	return e
}
