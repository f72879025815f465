package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Auth configures how agents authenticate.
type Auth struct {
	Issuer     string   `json:"issuer,omitempty"`
	Audience   string   `json:"audience,omitempty"`
	MaxTTL     Duration `json:"max_ttl,omitempty"`
	DefaultTTL Duration `json:"default_ttl,omitempty"`
	// External are OAuth/OIDC issuers whose JWT access tokens the MCP
	// endpoint accepts as Bearer credentials.
	External []ExternalIssuer `json:"external,omitempty"`
	// Scopes are the OAuth scopes an external token must carry (all of
	// them) to reach the MCP endpoint; published as scopes_supported and
	// named in challenges.
	Scopes []string `json:"scopes,omitempty"`
	// AuthorizationServer is the built-in OAuth authorization server (for
	// small deployments and --dev): MCP clients register, their person
	// signs in and consents, and the gateway accepts the tokens it issues.
	AuthorizationServer *AuthorizationServer `json:"authorization_server,omitempty"`
}

// AuthorizationServer configures the built-in authorization server, served
// on the agent listener at the gateway's public URL.
type AuthorizationServer struct {
	// Users who may sign in, with their passwords (value references).
	Users []LocalUser `json:"users,omitempty"`
	// Federation signs people in through the organisation's identity
	// provider (OpenID Connect) instead of, or besides, local passwords.
	Federation *SignInFederation `json:"federation,omitempty"`
	// Agents a person may let a client act as (required: an agent meant
	// for SVIDs or task tokens is not offered to passwords by default).
	Agents []string `json:"agents,omitempty"`
	// AccessTokenTTL is an access token's life (default 10m, at most
	// auth.max_ttl); RefreshTokenTTL a refresh token's (default 24h; each
	// use rotates it).
	AccessTokenTTL  Duration `json:"access_token_ttl,omitempty"`
	RefreshTokenTTL Duration `json:"refresh_token_ttl,omitempty"`
	// Optional (--dev only, not configurable): when the issuer cannot be
	// known (a listener on port 0), serve without the server.
	Optional bool `json:"-"`
}

// SignInFederation is the identity provider the built-in authorization
// server signs people in with: the gateway is its client (authorization
// code with PKCE; redirect URI <issuer of the built-in server>/oauth2/federated).
type SignInFederation struct {
	Issuer       string `json:"issuer"`
	ClientID     string `json:"client_id"`
	ClientSecret *Value `json:"client_secret,omitempty"`
	// UserClaim names the person in the ID token (default email, else
	// sub).
	UserClaim string `json:"user_claim,omitempty"`
}

// LocalUser is a person of the built-in authorization server.
type LocalUser struct {
	Name     string `json:"name"`
	Password Value  `json:"password"`
	// Agents this person may let a client act as (default: the server's
	// agents).
	Agents []string `json:"agents,omitempty"`
}

// MinLocalPassword is the shortest password a person of the built-in
// authorization server may have.
const MinLocalPassword = 12

// MaxRefreshTokenTTL bounds the built-in server's refresh tokens.
const MaxRefreshTokenTTL = 30 * 24 * time.Hour

// ExternalIssuer is an OAuth 2.0 / OIDC authorization server the gateway
// trusts: its signing keys come from discovery (issuer +
// /.well-known/openid-configuration, jwks_uri) and rotate with it. A token
// is accepted when signed by it with an allowed algorithm, unexpired, for
// Audience (the resource's URL, RFC 8707), and naming a configured agent.
type ExternalIssuer struct {
	Issuer   string `json:"issuer"`
	Audience string `json:"audience"`
	// Algorithms allowed (default RS256, ES256, EdDSA).
	Algorithms []string `json:"algorithms,omitempty"`
	// AgentClaim names the agent: the client the token was issued to
	// (default "azp", then "client_id"). Agents maps its values to agent
	// names; without a map the value must be an agent's name.
	AgentClaim string            `json:"agent_claim,omitempty"`
	Agents     map[string]string `json:"agents,omitempty"`
	// UserClaim names the person the agent acts for (default "sub").
	UserClaim string `json:"user_claim,omitempty"`
	// RolesClaim is a claim holding a list of groups; RoleMap maps groups
	// to Cedar roles added to the agent's. Groups not in the map are
	// ignored (an IdP group never becomes a role by its name alone).
	RolesClaim string            `json:"roles_claim,omitempty"`
	RoleMap    map[string]string `json:"role_map,omitempty"`
	// Introspection, when set, accepts the issuer's opaque (non-JWT)
	// tokens by asking it about each (RFC 7662).
	Introspection *Introspection `json:"introspection,omitempty"`
}

// Introspection is how the gateway asks an issuer about an opaque token:
// its introspection endpoint (default: from discovery) with the gateway's
// own client credentials (HTTP Basic).
type Introspection struct {
	Endpoint     string `json:"endpoint,omitempty"`
	ClientID     string `json:"client_id"`
	ClientSecret Value  `json:"client_secret"`
}

// scopeRE is an OAuth scope token (RFC 6749 §3.3, NQCHAR).
var scopeRE = regexp.MustCompile(`^[\x21\x23-\x5B\x5D-\x7E]{1,128}$`)

// ExternalAlgorithms are the JWS algorithms an external issuer may use
// (asymmetric only: a shared secret would let the gateway mint tokens).
var ExternalAlgorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// SecureURL reports whether s is an https URL, or an http one on a
// loopback host: where the gateway may send a token or fetch keys.
func SecureURL(s string) bool {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return false
	}
	h := u.Hostname()
	ip := net.ParseIP(h)
	return u.Scheme == "https" || u.Scheme == "http" && (h == "localhost" || ip != nil && ip.IsLoopback())
}

// AuthorizationServerIssuer is the built-in authorization server's issuer
// URL: the public URL (https, or http on loopback), else the agent
// listener's loopback address with its fixed port.
func (c *Config) AuthorizationServerIssuer() (string, error) {
	if p := c.Listen.PublicURL; p != "" {
		if !SecureURL(p) {
			return "", fmt.Errorf("listen.public_url %q must be https (http only on loopback) to issue tokens", p)
		}
		return strings.TrimRight(p, "/"), nil
	}
	addr := c.Listen.Address
	if addr == "" {
		addr = DefaultListenAddress
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil || port == "0" || port == "" {
		return "", errors.New("needs listen.public_url, or a listen address with a fixed port (its issuer URL)")
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return "", errors.New("needs listen.public_url (https) when the agent listener is not on loopback")
	}
	scheme := "http"
	if c.Listen.TLS.Enabled {
		scheme = "https"
	}
	return scheme + "://" + addr, nil
}

// validate checks the external issuers and scopes; c is the whole
// configuration (the agents the issuers map to).
func (a Auth) validate(c *Config) []error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	for i, sc := range a.Scopes {
		if !scopeRE.MatchString(sc) {
			add("auth.scopes[%d]: %q is not a scope token (RFC 6749: printable ASCII without spaces, quotes or backslashes)", i, sc)
		}
	}
	if as := a.AuthorizationServer; as != nil {
		if len(as.Users) == 0 && as.Federation == nil {
			add("auth.authorization_server.users: at least one is required (or a federation)")
		}
		if f := as.Federation; f != nil {
			if !SecureURL(f.Issuer) {
				add("auth.authorization_server.federation.issuer: %q must be an https URL (http only on loopback)", f.Issuer)
			}
			if f.ClientID == "" {
				add("auth.authorization_server.federation.client_id: required")
			}
			if f.ClientSecret != nil {
				if err := f.ClientSecret.validate("client_secret"); err != nil {
					add("auth.authorization_server.federation.client_secret: %v", err)
				}
			}
		}
		for i, u := range as.Users {
			if u.Name == "" || len(u.Name) > 64 {
				add("auth.authorization_server.users[%d].name: 1 to 64 characters", i)
			}
			if err := u.Password.validate("password"); err != nil {
				add("auth.authorization_server.users[%d].password: %v", i, err)
			}
		}
		if len(as.Agents) == 0 {
			add("auth.authorization_server.agents: required (the agents a person may let a client act as)")
		}
		for i, ag := range as.Agents {
			if _, ok := c.Agent(ag); !ok {
				add("auth.authorization_server.agents[%d]: %q is not a configured agent", i, ag)
			}
		}
		for i, u := range as.Users {
			for _, ag := range u.Agents {
				if !slices.Contains(as.Agents, ag) {
					add("auth.authorization_server.users[%d].agents: %q is not one of auth.authorization_server.agents", i, ag)
				}
			}
		}
		if as.AccessTokenTTL < 0 || as.RefreshTokenTTL < 0 || (a.MaxTTL > 0 && as.AccessTokenTTL > a.MaxTTL) || as.RefreshTokenTTL > Duration(MaxRefreshTokenTTL) {
			add("auth.authorization_server: token lifetimes must not be negative, access_token_ttl not over auth.max_ttl, refresh_token_ttl not over %s", MaxRefreshTokenTTL)
		}
		if _, err := c.AuthorizationServerIssuer(); err != nil {
			add("auth.authorization_server: %v", err)
		}
	}
	seenIssuer, introspecting := map[string]bool{}, 0
	for i, x := range a.External {
		iss := strings.TrimRight(x.Issuer, "/")
		if seenIssuer[iss] || iss == strings.TrimRight(a.Issuer, "/") {
			add("auth.external[%d].issuer: %q is listed twice or is this gateway's own issuer", i, x.Issuer)
		}
		seenIssuer[iss] = true
		if x.Introspection != nil {
			if introspecting++; introspecting > 1 {
				add("auth.external[%d].introspection: only one issuer may introspect (an opaque token names no issuer, and would be shown to each)", i)
			}
		}
		if !SecureURL(x.Issuer) {
			add("auth.external[%d].issuer: %q must be an https URL (http only on loopback)", i, x.Issuer)
		}
		if x.Audience == "" {
			add("auth.external[%d].audience: required (the resource's URL, RFC 8707)", i)
		}
		for _, alg := range x.Algorithms {
			if !slices.Contains(ExternalAlgorithms, alg) {
				add("auth.external[%d].algorithms: %q is not one of %v", i, alg, ExternalAlgorithms)
			}
		}
		if in := x.Introspection; in != nil {
			if in.ClientID == "" {
				add("auth.external[%d].introspection.client_id: required", i)
			}
			if err := in.ClientSecret.validate("client_secret"); err != nil {
				add("auth.external[%d].introspection.client_secret: %v", i, err)
			}
			if in.Endpoint != "" && !SecureURL(in.Endpoint) {
				add("auth.external[%d].introspection.endpoint: %q must be an https URL (http only on loopback)", i, in.Endpoint)
			}
		}
		for claim, agent := range x.Agents {
			if _, ok := c.Agent(agent); !ok {
				add("auth.external[%d].agents.%s: %q is not a configured agent", i, claim, agent)
			}
		}
	}
	return errs
}
