package authn

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/identity"
)

// External issuers: JWT access tokens from the organisation's
// authorization servers (config auth.external), verified against the
// issuer's published keys (OIDC discovery, JWKS, rotated as the issuer
// rotates them), for the configured audience, mapped to a configured agent,
// the user and roles. The mapped principal is decided on like a native one.

// Errors of external verification.
var (
	// ErrUnknownIssuer: the token names no configured issuer.
	ErrUnknownIssuer = errors.New("token from an issuer this gateway does not trust")
	// ErrIssuerUnavailable: the issuer's discovery document or keys could
	// not be fetched; the token is refused (fail closed) and discovery is
	// retried after a pause.
	ErrIssuerUnavailable = errors.New("issuer unavailable")
)

const (
	// discoveryTimeout bounds a discovery request; discoveryRetry is how
	// long a failed discovery is not retried.
	discoveryTimeout = 10 * time.Second
	discoveryRetry   = 30 * time.Second
)

// externalIssuer verifies one issuer's tokens.
type externalIssuer struct {
	cfg config.ExternalIssuer

	mu       sync.Mutex
	verifier *oidc.IDTokenVerifier
	failed   time.Time // last failed discovery
}

// external holds the configured issuers by issuer URL.
type external struct {
	byIssuer map[string]*externalIssuer
	agents   map[string]config.Agent
	now      func() time.Time
}

func newExternal(issuers []config.ExternalIssuer, agents map[string]config.Agent, now func() time.Time) *external {
	e := &external{byIssuer: map[string]*externalIssuer{}, agents: agents, now: now}
	for _, x := range issuers {
		e.byIssuer[strings.TrimRight(x.Issuer, "/")] = &externalIssuer{cfg: x}
	}
	return e
}

// issuerOf reads a JWT's iss claim without verifying it (to pick the
// verifier); "" when raw is not a JWT.
func issuerOf(raw string) string {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 || len(parts[1]) > 8<<10 {
		return ""
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return ""
	}
	var c struct {
		Iss string `json:"iss"`
	}
	if json.Unmarshal(b, &c) != nil {
		return ""
	}
	return c.Iss
}

// principal verifies raw as a token of a configured issuer and maps it.
func (e *external) principal(ctx context.Context, raw string) (*identity.Principal, error) {
	x := e.byIssuer[strings.TrimRight(issuerOf(raw), "/")]
	if x == nil {
		return nil, ErrUnknownIssuer
	}
	v, err := x.verifierFor(ctx, e.now())
	if err != nil {
		return nil, err
	}
	tok, err := v.Verify(ctx, raw)
	if err != nil {
		return nil, fmt.Errorf("external token: %w", err)
	}
	var claims map[string]any
	if err := tok.Claims(&claims); err != nil {
		return nil, fmt.Errorf("external token: %w", err)
	}
	return x.mapClaims(claims, tok, raw, e.agents)
}

func (x *externalIssuer) verifierFor(ctx context.Context, now time.Time) (*oidc.IDTokenVerifier, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.verifier != nil {
		return x.verifier, nil
	}
	if !x.failed.IsZero() && now.Sub(x.failed) < discoveryRetry {
		return nil, fmt.Errorf("%w: %s (discovery failed %s ago)", ErrIssuerUnavailable, x.cfg.Issuer, now.Sub(x.failed).Round(time.Second))
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), discoveryTimeout)
	defer cancel()
	p, err := oidc.NewProvider(dctx, x.cfg.Issuer)
	if err != nil {
		x.failed = now
		return nil, fmt.Errorf("%w: %s: %v", ErrIssuerUnavailable, x.cfg.Issuer, err)
	}
	algs := x.cfg.Algorithms
	if len(algs) == 0 {
		algs = []string{oidc.RS256, oidc.ES256, oidc.EdDSA}
	}
	// The keys stay bound to the discovery's context; a background one
	// keeps them refreshable after this request ends.
	keys := oidc.NewRemoteKeySet(context.Background(), jwksURI(p))
	x.verifier = oidc.NewVerifier(x.cfg.Issuer, keys, &oidc.Config{ClientID: x.cfg.Audience, SupportedSigningAlgs: algs})
	return x.verifier, nil
}

func jwksURI(p *oidc.Provider) string {
	var d struct {
		JWKS string `json:"jwks_uri"`
	}
	_ = p.Claims(&d)
	return d.JWKS
}

// mapClaims maps a verified token's claims to a principal.
func (x *externalIssuer) mapClaims(claims map[string]any, tok *oidc.IDToken, raw string, agents map[string]config.Agent) (*identity.Principal, error) {
	c := x.cfg
	var client string
	if c.AgentClaim != "" {
		client, _ = claims[c.AgentClaim].(string)
	} else {
		client, _ = claims["azp"].(string)
		if client == "" {
			client, _ = claims["client_id"].(string)
		}
	}
	if client == "" {
		return nil, errors.New("external token: no claim names the agent")
	}
	name := client
	if c.Agents != nil {
		if name = c.Agents[client]; name == "" {
			return nil, fmt.Errorf("external token: client %q is not mapped to an agent", client)
		}
	}
	ag, ok := agents[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q", config.ErrUnknownAgent, name)
	}
	userClaim := c.UserClaim
	if userClaim == "" {
		userClaim = "sub"
	}
	user, _ := claims[userClaim].(string)
	roles := slices.Clone(ag.Roles)
	if c.RolesClaim != "" {
		groups, _ := claims[c.RolesClaim].([]any)
		for _, g := range groups {
			if s, ok := g.(string); ok {
				if r := c.RoleMap[s]; r != "" && !slices.Contains(roles, r) {
					roles = append(roles, r)
				}
			}
		}
	}
	id, _ := claims["jti"].(string)
	if id == "" {
		sum := sha256.Sum256([]byte(raw))
		id = hex.EncodeToString(sum[:16])
	}
	return &identity.Principal{
		Agent: ag.Name, Roles: roles, User: user, CredentialID: "ext:" + id, Method: "oauth:" + c.Issuer, Expires: tok.Expiry,
	}, nil
}
