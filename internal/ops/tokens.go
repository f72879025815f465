package ops

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/identity"
	"github.com/portcullis-dev/portcullis/internal/reason"
	"github.com/portcullis-dev/portcullis/internal/secret"
	"github.com/portcullis-dev/portcullis/internal/token"
)

// IssueToken mints a token for a configured agent with the data directory's
// key (for ttl, or auth.default_ttl when 0) and records the issuance in the
// audit log. It is what
// `portcullis token issue` runs, beside or without a running gateway.
func (o *Ops) IssueToken(ctx context.Context, agent string, ttl time.Duration, by string) (string, token.Claims, error) {
	if _, ok := o.cfg.Agent(agent); !ok {
		return "", token.Claims{}, fmt.Errorf("issue token: %w: %q (declare it under agents:)", config.ErrUnknownAgent, agent)
	}
	return o.mint(ctx, token.TypAgent, o.cfg.Auth.Audience, agent, ttl, by)
}

// IssueAdminToken mints a short-lived admin-API token for a configured admin
// and audits it.
func (o *Ops) IssueAdminToken(ctx context.Context, admin string, ttl time.Duration, by string) (string, token.Claims, error) {
	if !o.cfg.Admin(admin) {
		return "", token.Claims{}, fmt.Errorf("issue admin token: %q is not a configured admin", admin)
	}
	return o.mint(ctx, token.TypAdmin, AdminAudience, admin, ttl, by)
}

// StartTask mints a task token (`portcullis task start`): the agent, the
// user it acts for, the tools the task may use (a subset of what its role
// allows, enforced on top of policy), a call budget, and the key the token
// is bound to. With identity.oidc configured the user must come from a
// verified ID token (idToken), never from the caller's word. The start is
// audited. A ttl of 0 is auth.default_ttl.
func (o *Ops) StartTask(ctx context.Context, t token.Task, idToken string, ttl time.Duration, by string) (string, token.Task, error) {
	if err := attributed(by); err != nil {
		return "", token.Task{}, err
	}
	if ttl <= 0 {
		ttl = o.cfg.Auth.DefaultTTL.D()
	}
	if _, ok := o.cfg.Agent(t.Agent); !ok {
		return "", token.Task{}, fmt.Errorf("start task: %w: %q", config.ErrUnknownAgent, t.Agent)
	}
	u, err := o.userOf(ctx, t.User, idToken)
	if err != nil {
		return "", token.Task{}, fmt.Errorf("start task: %w", err)
	}
	t.User = u
	key, err := o.signingKey()
	if err != nil {
		return "", token.Task{}, err
	}
	iss, err := token.NewTypedIssuer(key, token.TypTask, o.cfg.Auth.Issuer, o.cfg.Auth.Audience, o.cfg.Auth.MaxTTL.D(), nil)
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
	e.Detail = fmt.Sprintf("by %s: tools %v, budget %d, depth %d, bound to %s, expires %s: %s", by, t.Tools, t.Budget, t.Depth, binding, t.Expires.UTC().Format(time.RFC3339), t.Purpose)
	if err := audit.WriteNow(ctx, o.st, e); err != nil {
		return "", token.Task{}, fmt.Errorf("start task: audit: %w", err)
	}
	return raw, t, nil
}

// userOf is the user a task or intent is for: from the OIDC ID token when
// identity.oidc is configured (the caller may not name one), else as the
// caller named it.
func (o *Ops) userOf(ctx context.Context, named, idToken string) (string, error) {
	users, err := o.oidcUsers(ctx)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrIdentityProvider, err)
	}
	switch {
	case users != nil && idToken == "":
		return "", errors.New("an OIDC ID token names the user (identity.oidc is configured)")
	case users != nil:
		if named != "" {
			return "", errors.New("the user comes from the ID token, not from the caller")
		}
		return users.User(ctx, idToken)
	case idToken != "":
		return "", errors.New("an ID token was given but identity.oidc is not configured")
	}
	return named, nil
}

// IssueIntent signs what a user asked agent for (token.Intent), for an
// orchestrator to pass beside the agent's credential in the
// Portcullis-Intent header: values the request names are trusted
// provenance in the agent's sessions. The user is resolved as for a task;
// the issue is audited with the request's SHA-256, not its text.
func (o *Ops) IssueIntent(ctx context.Context, in token.Intent, idToken string, ttl time.Duration, by string) (string, token.Intent, error) {
	if err := attributed(by); err != nil {
		return "", token.Intent{}, err
	}
	if ttl <= 0 {
		ttl = o.cfg.Auth.DefaultTTL.D()
	}
	if _, ok := o.cfg.Agent(in.Agent); !ok {
		return "", token.Intent{}, fmt.Errorf("issue intent: %w: %q", config.ErrUnknownAgent, in.Agent)
	}
	u, err := o.userOf(ctx, in.User, idToken)
	if err != nil {
		return "", token.Intent{}, fmt.Errorf("issue intent: %w", err)
	}
	in.User = u
	key, err := o.signingKey()
	if err != nil {
		return "", token.Intent{}, err
	}
	iss, err := token.NewTypedIssuer(key, token.TypIntent, o.cfg.Auth.Issuer, o.cfg.Auth.Audience, o.cfg.Auth.MaxTTL.D(), nil)
	if err != nil {
		return "", token.Intent{}, err
	}
	raw, in, err := iss.IssueIntent(in, ttl)
	if err != nil {
		return "", token.Intent{}, err
	}
	sum := sha256.Sum256([]byte(in.Text))
	e := audit.New(audit.TypeToken, audit.OutcomeAllow, reason.IntentIssued, time.Now(), audit.Subject{Agent: in.Agent, User: in.User, Credential: in.TokenID})
	e.Detail = fmt.Sprintf("by %s: intent sha256:%x, expires %s", by, sum, in.Expires.UTC().Format(time.RFC3339))
	if err := audit.WriteNow(ctx, o.st, e); err != nil {
		return "", token.Intent{}, fmt.Errorf("issue intent: audit: %w", err)
	}
	return raw, in, nil
}

// oidcUsers is the verifier of ID tokens from identity.oidc (nil when none
// is configured), discovered on first use; a failed discovery is retried
// on the next call.
func (o *Ops) oidcUsers(ctx context.Context) (*identity.Users, error) {
	c := o.cfg.Identity.OIDC
	if c == nil {
		return nil, nil
	}
	o.usersMu.Lock()
	defer o.usersMu.Unlock()
	if o.users == nil {
		u, err := identity.NewUsers(ctx, c.Issuer, c.ClientID, c.UserClaim)
		if err != nil {
			return nil, err
		}
		o.users = u
	}
	return o.users, nil
}

// SetSecret seals a secret into the store (`portcullis secret set`); the
// value is never printed or audited, only that it was set.
func (o *Ops) SetSecret(ctx context.Context, name string, value []byte, by string) error {
	if err := attributed(by); err != nil {
		return err
	}
	v, err := secret.Open(filepath.Join(o.dir, KeysDir), o.st)
	if err != nil {
		return err
	}
	e := audit.New(audit.TypeIdentity, audit.OutcomeInfo, reason.SecretSet, time.Now(), audit.Subject{})
	e.Target, e.Detail = name, "by "+by
	if err := audit.WriteNow(ctx, o.st, e); err != nil {
		return err
	}
	return v.Put(ctx, name, value)
}

// SecretNames lists the stored secrets' names.
func (o *Ops) SecretNames(ctx context.Context) ([]string, error) {
	return o.st.SecretNames(ctx)
}

// mint issues a token and audits it; the token is not released unless the
// audit event is durable.
func (o *Ops) mint(ctx context.Context, typ, audience, name string, ttl time.Duration, by string) (string, token.Claims, error) {
	if err := attributed(by); err != nil {
		return "", token.Claims{}, err
	}
	if ttl <= 0 {
		ttl = o.cfg.Auth.DefaultTTL.D()
	}
	key, err := o.signingKey()
	if err != nil {
		return "", token.Claims{}, err
	}
	iss, err := token.NewTypedIssuer(key, typ, o.cfg.Auth.Issuer, audience, o.cfg.Auth.MaxTTL.D(), nil)
	if err != nil {
		return "", token.Claims{}, err
	}
	raw, c, err := iss.Issue(name, ttl)
	if err != nil {
		return "", token.Claims{}, err
	}
	who := audit.Subject{Credential: c.ID}
	detail := "by " + by + ", expires " + c.Expires.UTC().Format(time.RFC3339)
	if typ == token.TypAgent {
		who.Agent = name
	} else {
		detail = "admin token for " + name + ", " + detail
	}
	e := audit.New(audit.TypeToken, audit.OutcomeAllow, "", c.IssuedAt, who)
	e.Detail = detail
	if err := audit.WriteNow(ctx, o.st, e); err != nil {
		return "", token.Claims{}, fmt.Errorf("issue token: audit: %w", err)
	}
	return raw, c, nil
}
