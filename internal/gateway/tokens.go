package gateway

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/identity"
	"github.com/portcullis-dev/portcullis/internal/reason"
	"github.com/portcullis-dev/portcullis/internal/secret"
	"github.com/portcullis-dev/portcullis/internal/store"
	"github.com/portcullis-dev/portcullis/internal/token"
)

// IssueToken mints a token for a configured agent with the data directory's
// key and records the issuance in the audit log. It is what
// `portcullis token issue` runs, beside or without a running gateway.
func IssueToken(ctx context.Context, cfg *config.Config, agent string, ttl time.Duration) (string, token.Claims, error) {
	if _, ok := cfg.Agent(agent); !ok {
		return "", token.Claims{}, fmt.Errorf("issue token: %w: %q (declare it under agents:)", ErrUnknownAgent, agent)
	}
	return mintStandalone(ctx, cfg, token.TypAgent, cfg.Auth.Audience, agent, ttl)
}

// IssueAdminToken mints a short-lived admin-API token for a configured admin
// and audits it.
func IssueAdminToken(ctx context.Context, cfg *config.Config, admin string, ttl time.Duration) (string, token.Claims, error) {
	if !cfg.Admin(admin) {
		return "", token.Claims{}, fmt.Errorf("issue admin token: %q is not a configured admin", admin)
	}
	return mintStandalone(ctx, cfg, token.TypAdmin, AdminAudience, admin, ttl)
}

// IssueToken mints an agent token with the gateway's own key and store
// (used for the `serve --dev` banner before the recorder runs).
func (g *Gateway) IssueToken(ctx context.Context, agent string, ttl time.Duration) (string, token.Claims, error) {
	if _, ok := g.cfg.Agent(agent); !ok {
		return "", token.Claims{}, fmt.Errorf("issue token: %w: %q", ErrUnknownAgent, agent)
	}
	return mint(ctx, g.cfg, g.key, g.store, token.TypAgent, g.cfg.Auth.Audience, agent, ttl)
}

func mintStandalone(ctx context.Context, cfg *config.Config, typ, audience, name string, ttl time.Duration) (string, token.Claims, error) {
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
	return mint(ctx, cfg, key, st, typ, audience, name, ttl)
}

// mint issues a token and audits it; the token is not released unless the
// audit event is durable.
func mint(ctx context.Context, cfg *config.Config, key *token.SigningKey, st audit.LogStore, typ, audience, name string, ttl time.Duration) (string, token.Claims, error) {
	iss, err := token.NewTypedIssuer(key, typ, cfg.Auth.Issuer, audience, cfg.Auth.MaxTTL.D(), nil)
	if err != nil {
		return "", token.Claims{}, err
	}
	raw, c, err := iss.Issue(name, ttl)
	if err != nil {
		return "", token.Claims{}, err
	}
	who := audit.Subject{Credential: c.ID}
	detail := "expires " + c.Expires.UTC().Format(time.RFC3339)
	if typ == token.TypAgent {
		who.Agent = name
	} else {
		detail = "admin token for " + name + ", " + detail
	}
	e := audit.New(audit.TypeToken, audit.OutcomeAllow, "", c.IssuedAt, who)
	e.Detail = detail
	if err := audit.WriteNow(ctx, st, e); err != nil {
		return "", token.Claims{}, fmt.Errorf("issue token: audit: %w", err)
	}
	return raw, c, nil
}

// StartTask mints a task token (`portcullis task start`): the agent, the
// user it acts for, the tools the task may use (a subset of what its role
// allows, enforced on top of policy), a call budget, and the key the token
// is bound to. With identity.oidc configured the user must come from a
// verified ID token (idToken), never from the caller's word. The start is
// audited.
func StartTask(ctx context.Context, cfg *config.Config, t token.Task, idToken string, ttl time.Duration) (string, token.Task, error) {
	dir := DataDir(cfg)
	key, err := token.LoadOrCreateKey(filepath.Join(dir, KeyFile))
	if err != nil {
		return "", token.Task{}, err
	}
	st, err := store.Open(filepath.Join(dir, StoreFile))
	if err != nil {
		return "", token.Task{}, err
	}
	defer st.Close()
	users, err := oidcUsers(ctx, cfg)
	if err != nil {
		return "", token.Task{}, err
	}
	return startTask(ctx, cfg, key, st, users, t, idToken, ttl)
}

func oidcUsers(ctx context.Context, cfg *config.Config) (*identity.Users, error) {
	o := cfg.Identity.OIDC
	if o == nil {
		return nil, nil
	}
	return identity.NewUsers(ctx, o.Issuer, o.ClientID, o.UserClaim)
}

func startTask(ctx context.Context, cfg *config.Config, key *token.SigningKey, st audit.LogStore, users *identity.Users, t token.Task, idToken string, ttl time.Duration) (string, token.Task, error) {
	if _, ok := cfg.Agent(t.Agent); !ok {
		return "", token.Task{}, fmt.Errorf("start task: %w: %q", ErrUnknownAgent, t.Agent)
	}
	switch {
	case users != nil && idToken == "":
		return "", token.Task{}, errors.New("start task: an OIDC ID token names the user (identity.oidc is configured)")
	case users != nil:
		if t.User != "" {
			return "", token.Task{}, errors.New("start task: the user comes from the ID token, not from the caller")
		}
		u, err := users.User(ctx, idToken)
		if err != nil {
			return "", token.Task{}, fmt.Errorf("start task: %w", err)
		}
		t.User = u
	case idToken != "":
		return "", token.Task{}, errors.New("start task: an ID token was given but identity.oidc is not configured")
	}
	iss, err := token.NewTypedIssuer(key, token.TypTask, cfg.Auth.Issuer, cfg.Auth.Audience, cfg.Auth.MaxTTL.D(), nil)
	if err != nil {
		return "", token.Task{}, err
	}
	raw, t, err := iss.IssueTask(t, ttl)
	if err != nil {
		return "", token.Task{}, err
	}
	binding := "DPoP key " + t.JKT
	if t.X5T != "" {
		binding = "client certificate " + t.X5T
	}
	e := audit.New(audit.TypeToken, audit.OutcomeAllow, reason.TaskStarted, time.Now(), audit.Subject{Agent: t.Agent, User: t.User, Task: t.ID, Credential: t.TokenID})
	e.Detail = fmt.Sprintf("tools %v, budget %d, depth %d, bound to %s, expires %s: %s", t.Tools, t.Budget, t.Depth, binding, t.Expires.UTC().Format(time.RFC3339), t.Purpose)
	if err := audit.WriteNow(ctx, st, e); err != nil {
		return "", token.Task{}, fmt.Errorf("start task: audit: %w", err)
	}
	return raw, t, nil
}

// SetSecret seals a secret into the store (`portcullis secret set`); the
// value is never printed or audited, only that it was set.
func SetSecret(ctx context.Context, cfg *config.Config, name string, value []byte, by string) error {
	_, err := withStore(cfg, func(st *store.SQLite) (struct{}, error) {
		v, err := secret.Open(filepath.Join(DataDir(cfg), "keys"), st)
		if err != nil {
			return struct{}{}, err
		}
		e := audit.New(audit.TypeIdentity, audit.OutcomeInfo, reason.SecretSet, time.Now(), audit.Subject{})
		e.Target, e.Detail = name, "by "+by
		if err := audit.WriteNow(ctx, st, e); err != nil {
			return struct{}{}, err
		}
		return struct{}{}, v.Put(ctx, name, value)
	})
	return err
}

// SecretNames lists the stored secrets' names.
func SecretNames(ctx context.Context, cfg *config.Config) ([]string, error) {
	return withStore(cfg, func(st *store.SQLite) ([]string, error) { return st.SecretNames(ctx) })
}
