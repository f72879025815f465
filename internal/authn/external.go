package authn

import (
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"

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
	// ErrInsufficientScope: a valid token without every scope auth.scopes
	// requires (answered 403 insufficient_scope).
	ErrInsufficientScope = errors.New("insufficient scope")
)

const (
	// discoveryTimeout bounds a discovery request; discoveryRetry is how
	// long a failed discovery is not retried.
	discoveryTimeout = 10 * time.Second
	discoveryRetry   = 30 * time.Second
)

// externalIssuer verifies one issuer's tokens.
type externalIssuer struct {
	cfg    config.ExternalIssuer
	secret string // introspection client secret (resolved)

	mu         sync.Mutex
	verifier   *oidc.IDTokenVerifier
	introspect string    // the introspection endpoint (config, else discovery)
	failed     time.Time // last failed discovery
}

// external holds the configured issuers by issuer URL.
type external struct {
	byIssuer map[string]*externalIssuer
	scopes   []string // required of every token
	// introspecting are the issuers asked about opaque tokens, in order.
	introspecting []*externalIssuer
	agents        map[string]config.Agent
	now           func() time.Time
	http          *http.Client

	mu    sync.Mutex
	cache map[[32]byte]introspected
}

// introspected is an introspection's answer, kept briefly: an issuer that
// revokes a token is believed within introspectionCache. A refusal is
// kept too, so that a garbage token sent again does not make the gateway
// ask again.
type introspected struct {
	p     *identity.Principal
	err   error
	until time.Time
}

const (
	introspectionCache   = 30 * time.Second
	introspectionTimeout = 5 * time.Second
	maxIntrospectionBody = 64 << 10
	maxIntrospectionKeep = 10000
)

// newExternal builds the verifiers; secrets are the introspection client
// secrets by issuer URL.
func newExternal(issuers []config.ExternalIssuer, scopes []string, secrets map[string]string, agents map[string]config.Agent, now func() time.Time) *external {
	e := &external{byIssuer: map[string]*externalIssuer{}, scopes: scopes, agents: agents, now: now,
		http: noRedirects(introspectionTimeout), cache: map[[32]byte]introspected{}}
	for _, x := range issuers {
		xi := &externalIssuer{cfg: x, secret: secrets[x.Issuer]}
		e.byIssuer[strings.TrimRight(x.Issuer, "/")] = xi
		if x.Introspection != nil {
			xi.introspect = x.Introspection.Endpoint
			e.introspecting = append(e.introspecting, xi)
		}
	}
	return e
}

// local gives issuers in process their keys: their verifiers need no
// discovery.
func (e *external) local(keys map[string]crypto.PublicKey) {
	for iss, key := range keys {
		x := e.byIssuer[strings.TrimRight(iss, "/")]
		if x == nil {
			continue
		}
		algs := x.cfg.Algorithms
		if len(algs) == 0 {
			algs = []string{oidc.ES256}
		}
		x.verifier = oidc.NewVerifier(x.cfg.Issuer, &oidc.StaticKeySet{PublicKeys: []crypto.PublicKey{key}}, &oidc.Config{ClientID: x.cfg.Audience, SupportedSigningAlgs: algs})
	}
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
	if err := e.hasScopes(claims); err != nil {
		return nil, err
	}
	return x.mapClaims(claims, tok.Expiry, raw, e.agents)
}

// hasScopes checks that claims carry every required scope ("scope", space
// separated, or "scp", a list or a string).
func (e *external) hasScopes(claims map[string]any) error {
	if len(e.scopes) == 0 {
		return nil
	}
	var have []string
	switch s := claims["scope"].(type) {
	case string:
		have = strings.Fields(s)
	}
	switch s := claims["scp"].(type) {
	case string:
		have = append(have, strings.Fields(s)...)
	case []any:
		for _, v := range s {
			if x, ok := v.(string); ok {
				have = append(have, x)
			}
		}
	}
	for _, want := range e.scopes {
		if !slices.Contains(have, want) {
			return fmt.Errorf("%w: the token lacks %q", ErrInsufficientScope, want)
		}
	}
	return nil
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
	ep := jwksURI(p)
	if !config.SecureURL(ep) {
		x.failed = now
		return nil, fmt.Errorf("%w: %s: jwks_uri %q is not https", ErrIssuerUnavailable, x.cfg.Issuer, ep)
	}
	keys := &keySet{url: ep, client: noRedirects(discoveryTimeout), now: time.Now}
	for _, a := range algs {
		keys.algs = append(keys.algs, jose.SignatureAlgorithm(a))
	}
	x.verifier = oidc.NewVerifier(x.cfg.Issuer, keys, &oidc.Config{ClientID: x.cfg.Audience, SupportedSigningAlgs: algs})
	if x.introspect == "" {
		if ep := discovered(p).Introspection; config.SecureURL(ep) {
			x.introspect = ep
		}
	}
	return x.verifier, nil
}

// keySet verifies signatures with an issuer's published keys (JWKS). It
// fetches them when a token names a key it does not hold, at most once per
// keyRefresh: a forged token cannot make the gateway fetch on every
// request. Fetches have a timeout and a size limit.
type keySet struct {
	url    string
	client *http.Client
	algs   []jose.SignatureAlgorithm
	now    func() time.Time

	mu      sync.Mutex
	keys    []jose.JSONWebKey
	fetched time.Time
}

const (
	keyRefresh  = 30 * time.Second
	maxJWKSBody = 256 << 10
)

var _ oidc.KeySet = (*keySet)(nil)

// VerifySignature implements oidc.KeySet.
func (k *keySet) VerifySignature(ctx context.Context, raw string) ([]byte, error) {
	jws, err := jose.ParseSignedCompact(raw, k.algs)
	if err != nil {
		return nil, fmt.Errorf("malformed jws: %w", err)
	}
	if p, ok := k.try(jws); ok {
		return p, nil
	}
	if err := k.refresh(ctx); err != nil {
		return nil, err
	}
	if p, ok := k.try(jws); ok {
		return p, nil
	}
	return nil, errors.New("failed to verify signature: no published key verifies it")
}

func (k *keySet) try(jws *jose.JSONWebSignature) ([]byte, bool) {
	k.mu.Lock()
	keys := k.keys
	k.mu.Unlock()
	kid := ""
	if len(jws.Signatures) == 1 {
		kid = jws.Signatures[0].Header.KeyID
	}
	for _, key := range keys {
		if kid != "" && key.KeyID != kid || key.Use == "enc" {
			continue
		}
		if p, err := jws.Verify(key.Key); err == nil {
			return p, true
		}
	}
	return nil, false
}

// refresh fetches the keys unless they were fetched within keyRefresh.
func (k *keySet) refresh(ctx context.Context) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	now := k.now()
	if !k.fetched.IsZero() && now.Sub(k.fetched) < keyRefresh {
		return errors.New("failed to verify signature: unknown key (keys fetched recently)")
	}
	k.fetched = now
	req, err := http.NewRequestWithContext(context.WithoutCancel(ctx), http.MethodGet, k.url, nil)
	if err != nil {
		return err
	}
	resp, err := k.client.Do(req)
	if err != nil {
		return fmt.Errorf("%w: jwks: %v", ErrIssuerUnavailable, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: jwks answered %d", ErrIssuerUnavailable, resp.StatusCode)
	}
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxJWKSBody)).Decode(&set); err != nil {
		return fmt.Errorf("%w: jwks: %v", ErrIssuerUnavailable, err)
	}
	k.keys = set.Keys
	return nil
}

// noRedirects is an HTTP client that does not follow redirects (a 307
// would resend the token elsewhere) and gives up after timeout.
func noRedirects(timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

type discovery struct {
	JWKS          string `json:"jwks_uri"`
	Introspection string `json:"introspection_endpoint"`
}

func discovered(p *oidc.Provider) discovery {
	var d discovery
	_ = p.Claims(&d)
	return d
}

func jwksURI(p *oidc.Provider) string { return discovered(p).JWKS }

// introspect asks the introspecting issuers about an opaque token (RFC
// 7662), in order; the first that knows it decides. Answers are cached
// briefly by the token's hash.
func (e *external) introspect(ctx context.Context, raw string) (*identity.Principal, error) {
	key := sha256.Sum256([]byte(raw))
	now := e.now()
	e.mu.Lock()
	if c, ok := e.cache[key]; ok && now.Before(c.until) {
		e.mu.Unlock()
		return c.p, c.err
	}
	e.mu.Unlock()
	// One issuer introspects (configuration allows no more): an opaque
	// token is never shown to another issuer.
	x := e.introspecting[0]
	p, err := x.ask(ctx, e, raw, now)
	until := now.Add(introspectionCache)
	if p != nil && p.Expires.Before(until) {
		until = p.Expires
	}
	if errors.Is(err, ErrIssuerUnavailable) {
		until = now.Add(time.Second) // the issuer, not the token: ask again soon
	}
	e.mu.Lock()
	if len(e.cache) >= maxIntrospectionKeep {
		clear(e.cache)
	}
	e.cache[key] = introspected{p: p, err: err, until: until}
	e.mu.Unlock()
	return p, err
}

// ask is one introspection request.
func (x *externalIssuer) ask(ctx context.Context, e *external, raw string, now time.Time) (*identity.Principal, error) {
	if _, err := x.verifierFor(ctx, now); err != nil && x.cfg.Introspection.Endpoint == "" {
		return nil, err // the endpoint comes from discovery, which failed
	}
	x.mu.Lock()
	endpoint := x.introspect
	x.mu.Unlock()
	if endpoint == "" {
		return nil, fmt.Errorf("%w: %s publishes no introspection endpoint", ErrIssuerUnavailable, x.cfg.Issuer)
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), introspectionTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, endpoint,
		strings.NewReader(url.Values{"token": {raw}, "token_type_hint": {"access_token"}}.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.SetBasicAuth(url.QueryEscape(x.cfg.Introspection.ClientID), url.QueryEscape(x.secret))
	resp, err := e.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: introspection: %v", ErrIssuerUnavailable, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%w: introspection answered %d", ErrIssuerUnavailable, resp.StatusCode)
	}
	var claims map[string]any
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxIntrospectionBody)).Decode(&claims); err != nil {
		return nil, fmt.Errorf("%w: introspection: %v", ErrIssuerUnavailable, err)
	}
	if active, _ := claims["active"].(bool); !active {
		return nil, errors.New("external token: inactive (introspection)")
	}
	if iss, ok := claims["iss"].(string); ok && strings.TrimRight(iss, "/") != strings.TrimRight(x.cfg.Issuer, "/") {
		return nil, errors.New("external token: introspection names another issuer")
	}
	if !audienceHas(claims["aud"], x.cfg.Audience) {
		return nil, errors.New("external token: not for this resource (aud)")
	}
	exp, ok := claims["exp"].(float64)
	if !ok || !now.Before(time.Unix(int64(exp), 0)) {
		return nil, errors.New("external token: expired or without exp")
	}
	if _, ok := claims["azp"]; !ok && x.cfg.AgentClaim == "" {
		claims["azp"] = claims["client_id"]
	}
	if err := e.hasScopes(claims); err != nil {
		return nil, err
	}
	return x.mapClaims(claims, time.Unix(int64(exp), 0), raw, e.agents)
}

// audienceHas: aud (a string or a list) names want.
func audienceHas(aud any, want string) bool {
	switch a := aud.(type) {
	case string:
		return a == want
	case []any:
		for _, v := range a {
			if s, _ := v.(string); s == want {
				return true
			}
		}
	}
	return false
}

// mapClaims maps a verified token's claims to a principal.
func (x *externalIssuer) mapClaims(claims map[string]any, expires time.Time, raw string, agents map[string]config.Agent) (*identity.Principal, error) {
	c := x.cfg
	if _, ok := claims["nonce"]; ok {
		return nil, errors.New("external token: an ID token (nonce), not an access token")
	}
	if _, ok := claims["at_hash"]; ok {
		return nil, errors.New("external token: an ID token (at_hash), not an access token")
	}
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
	// The credential ID is the issuer's and the token's together, so that
	// two issuers' jti never name one credential; a token naming its grant
	// (sid: every token refreshed from one consent) is that grant, so that
	// revoking it outlives refreshes.
	id, _ := claims["sid"].(string)
	if id != "" {
		id = "sid:" + id
	} else {
		id, _ = claims["jti"].(string)
	}
	if id == "" {
		id = raw
	}
	sum := sha256.Sum256([]byte(c.Issuer + "\x00" + id))
	id = hex.EncodeToString(sum[:12])
	return &identity.Principal{
		Agent: ag.Name, Roles: roles, User: user, CredentialID: "ext:" + id, Method: "oauth:" + c.Issuer, Expires: expires,
	}, nil
}
