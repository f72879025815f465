package gateway

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/store"
	"github.com/portcullis-dev/portcullis/internal/token"
)

// IssueToken mints a token for a configured agent with the data directory's
// key and records the issuance in the audit log. It is what
// `portcullis token issue` runs, beside or without a running gateway.
func IssueToken(ctx context.Context, cfg *config.Config, agent string, ttl time.Duration) (string, token.Claims, error) {
	dir := DataDir(cfg)
	key, err := token.LoadOrCreateKey(filepath.Join(dir, KeyFile))
	if err != nil {
		return "", token.Claims{}, err
	}
	st, err := store.Open(filepath.Join(dir, StoreFile))
	if err != nil {
		return "", token.Claims{}, err
	}
	defer st.Close()
	return issue(ctx, cfg, key, st, agent, ttl)
}

// IssueToken mints a token with the gateway's own key and store (used for
// the `serve --dev` banner before the recorder runs).
func (g *Gateway) IssueToken(ctx context.Context, agent string, ttl time.Duration) (string, token.Claims, error) {
	return issue(ctx, g.cfg, g.key, g.store, agent, ttl)
}

func issue(ctx context.Context, cfg *config.Config, key *token.SigningKey, st audit.LogStore, agent string, ttl time.Duration) (string, token.Claims, error) {
	if _, ok := cfg.Agent(agent); !ok {
		return "", token.Claims{}, fmt.Errorf("issue token: %w: %q (declare it under agents:)", ErrUnknownAgent, agent)
	}
	iss, err := token.NewIssuer(key, cfg.Auth.Issuer, cfg.Auth.Audience, cfg.Auth.MaxTTL.D(), nil)
	if err != nil {
		return "", token.Claims{}, err
	}
	raw, c, err := iss.Issue(agent, ttl)
	if err != nil {
		return "", token.Claims{}, err
	}
	e := audit.NewEvent(audit.TypeToken, c.IssuedAt)
	e.Outcome, e.Agent, e.Credential = audit.OutcomeAllow, agent, c.ID
	e.Detail = "expires " + c.Expires.UTC().Format(time.RFC3339)
	if err := audit.WriteNow(ctx, st, e); err != nil {
		return "", token.Claims{}, fmt.Errorf("issue token: audit: %w", err)
	}
	return raw, c, nil
}

// IssueAdminToken mints a short-lived admin-API token for a configured admin
// and audits it.
func IssueAdminToken(ctx context.Context, cfg *config.Config, admin string, ttl time.Duration) (string, token.Claims, error) {
	if !cfg.Admin(admin) {
		return "", token.Claims{}, fmt.Errorf("issue admin token: %q is not a configured admin", admin)
	}
	dir := DataDir(cfg)
	key, err := token.LoadOrCreateKey(filepath.Join(dir, KeyFile))
	if err != nil {
		return "", token.Claims{}, err
	}
	st, err := store.Open(filepath.Join(dir, StoreFile))
	if err != nil {
		return "", token.Claims{}, err
	}
	defer st.Close()
	iss, err := token.NewTypedIssuer(key, token.TypAdmin, cfg.Auth.Issuer, AdminAudience, cfg.Auth.MaxTTL.D(), nil)
	if err != nil {
		return "", token.Claims{}, err
	}
	raw, c, err := iss.Issue(admin, ttl)
	if err != nil {
		return "", token.Claims{}, err
	}
	e := audit.NewEvent(audit.TypeToken, c.IssuedAt)
	e.Outcome, e.Credential, e.Detail = audit.OutcomeAllow, c.ID, "admin token for "+admin+", expires "+c.Expires.UTC().Format(time.RFC3339)
	if err := audit.WriteNow(ctx, st, e); err != nil {
		return "", token.Claims{}, err
	}
	return raw, c, nil
}
