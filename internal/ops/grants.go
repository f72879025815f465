package ops

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/grant"
	"github.com/portcullis-dev/portcullis/internal/reason"
	"github.com/portcullis-dev/portcullis/internal/store"
)

// CreateGrant records a just-in-time grant and audits it
// (`portcullis grant`). The agent must be configured.
func (o *Ops) CreateGrant(ctx context.Context, agent, tool, why, by string, d time.Duration) (grant.Grant, error) {
	if err := attributed(by); err != nil {
		return grant.Grant{}, err
	}
	if err := o.knownTool(ctx, tool); err != nil {
		return grant.Grant{}, fmt.Errorf("grant: %w", err)
	}
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
	// Recorded first, then revoked: a revocation that could not be
	// recorded is not made.
	var g grant.Grant
	all, err := o.st.Grants(ctx, time.Time{})
	if err != nil {
		return grant.Grant{}, err
	}
	for _, x := range all {
		if x.ID == id && !x.Revoked {
			g = x
		}
	}
	if g.ID == "" {
		return grant.Grant{}, fmt.Errorf("revoke grant %s: %w (or already revoked; `portcullis grant list --all`)", id, store.ErrNotFound)
	}
	e := GrantEvent(g, reason.GrantRevoked)
	e.Detail += "; revoked by " + by
	if err := audit.WriteNow(ctx, o.st, e); err != nil {
		return grant.Grant{}, err
	}
	return o.st.RevokeGrant(ctx, id)
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

// knownTool checks that tool (qualified, <upstream>__<name>) names a
// configured upstream and a tool it has offered (a recorded definition):
// a grant for anything else would grant nothing and hide a typo.
func (o *Ops) knownTool(ctx context.Context, tool string) error {
	up, name, ok := strings.Cut(tool, config.NamespaceSeparator)
	if !ok || name == "" {
		return fmt.Errorf("tool %q: name it <upstream>%s<tool>, as policy does", tool, config.NamespaceSeparator)
	}
	if !slices.ContainsFunc(o.cfg.Upstreams, func(u config.Upstream) bool { return u.Name == up }) {
		return fmt.Errorf("tool %q: no upstream %q in the configuration", tool, up)
	}
	pins, err := o.st.Pins(ctx, up)
	if err != nil {
		return err
	}
	if len(pins) == 0 {
		return fmt.Errorf("tool %q: no tool definitions of upstream %q are recorded yet (start the gateway so that it meets the upstream, then grant)", tool, up)
	}
	var names []string
	for _, p := range pins {
		if p.Name == name {
			return nil
		}
		if !slices.Contains(names, p.Name) {
			names = append(names, p.Name)
		}
	}
	slices.Sort(names)
	return fmt.Errorf("tool %q: upstream %q offers no tool %q (it offers %s)", tool, up, name, strings.Join(names, ", "))
}
