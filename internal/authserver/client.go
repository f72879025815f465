package authserver

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// client is a registered public client (an MCP client: Claude Code, an
// IDE, an SDK agent). It has no secret: PKCE binds its code to it.
type client struct {
	id        string
	name      string
	redirects []string
	native    bool // every redirect on loopback: any port (RFC 8252)
	s         *Server
}

func (c *client) GetID() string                    { return c.id }
func (c *client) RedirectURIs() []string           { return c.redirects }
func (c *client) PostLogoutRedirectURIs() []string { return nil }
func (c *client) ApplicationType() op.ApplicationType {
	if c.native {
		return op.ApplicationTypeNative
	}
	return op.ApplicationTypeWeb
}
func (c *client) AuthMethod() oidc.AuthMethod { return oidc.AuthMethodNone }
func (c *client) ResponseTypes() []oidc.ResponseType {
	return []oidc.ResponseType{oidc.ResponseTypeCode}
}
func (c *client) GrantTypes() []oidc.GrantType {
	return []oidc.GrantType{oidc.GrantTypeCode, oidc.GrantTypeRefreshToken}
}
func (c *client) LoginURL(id string) string {
	return LoginPath + "?id=" + url.QueryEscape(id)
}
func (c *client) AccessTokenType() op.AccessTokenType { return op.AccessTokenTypeJWT }
func (c *client) IDTokenLifetime() time.Duration      { return c.s.o.AccessTTL }
func (c *client) DevMode() bool                       { return false }
func (c *client) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (c *client) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (c *client) IsScopeAllowed(scope string) bool     { return c.s.scopesAllowed(scope) }
func (c *client) IDTokenUserinfoClaimsAssertion() bool { return false }
func (c *client) ClockSkew() time.Duration             { return 0 }

// Dynamic client registration (RFC 7591), public clients only.
const (
	maxRegistrationBody = 16 << 10
	maxRedirects        = 8
	maxClientName       = 100
)

type registration struct {
	RedirectURIs            []string `json:"redirect_uris"`
	ClientName              string   `json:"client_name,omitempty"`
	TokenEndpointAuthMethod string   `json:"token_endpoint_auth_method,omitempty"`
	GrantTypes              []string `json:"grant_types,omitempty"`
	ResponseTypes           []string `json:"response_types,omitempty"`
}

// serveRegister registers a client. Its redirect URIs must be https, or
// http on loopback (a native client's local listener).
func (s *Server) serveRegister(w http.ResponseWriter, r *http.Request) {
	var reg registration
	dec := json.NewDecoder(io.LimitReader(r.Body, maxRegistrationBody))
	if err := dec.Decode(&reg); err != nil {
		registrationError(w, "invalid_client_metadata", "the body is not a JSON client registration")
		return
	}
	w.Header().Set("Access-Control-Allow-Origin", "*")
	if s.signups.add(remoteAddr(r)) > maxRegistrations {
		w.Header().Set("Retry-After", "900")
		registrationError(w, "temporarily_unavailable", "too many registrations from this address")
		return
	}
	c, err := s.newClient(reg)
	if err != nil {
		registrationError(w, "invalid_redirect_uri", err.Error())
		return
	}
	if err := s.st.addClient(c); err != nil {
		registrationError(w, "temporarily_unavailable", err.Error())
		return
	}
	s.o.Event(Event{Kind: EventClientRegistered, Client: c.id, Detail: fmt.Sprintf("%q, redirects %v", c.name, c.redirects)})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusCreated)
	json.NewEncoder(w).Encode(map[string]any{
		"client_id": c.id, "client_id_issued_at": s.now().Unix(), "client_name": c.name,
		"redirect_uris": c.redirects, "grant_types": []string{"authorization_code", "refresh_token"},
		"response_types": []string{"code"}, "token_endpoint_auth_method": "none",
	})
}

func (s *Server) newClient(reg registration) (*client, error) {
	if m := reg.TokenEndpointAuthMethod; m != "" && m != "none" {
		return nil, errors.New("only public clients (token_endpoint_auth_method none, with PKCE) can register")
	}
	for _, g := range reg.GrantTypes {
		if g != "authorization_code" && g != "refresh_token" {
			return nil, fmt.Errorf("grant type %q is not offered", g)
		}
	}
	for _, rt := range reg.ResponseTypes {
		if rt != "code" {
			return nil, fmt.Errorf("response type %q is not offered", rt)
		}
	}
	if len(reg.RedirectURIs) == 0 || len(reg.RedirectURIs) > maxRedirects {
		return nil, fmt.Errorf("give 1 to %d redirect URIs", maxRedirects)
	}
	native := true
	for _, ru := range reg.RedirectURIs {
		u, err := url.Parse(ru)
		if err != nil || u.Fragment != "" || u.Host == "" || len(ru) > 512 {
			return nil, fmt.Errorf("redirect URI %q is not an absolute URL without a fragment", ru)
		}
		_, loopback := op.HTTPLoopbackOrLocalhost(ru)
		switch {
		case u.Scheme == "http" && loopback:
		case u.Scheme == "https":
			native = false
		default:
			return nil, fmt.Errorf("redirect URI %q must be https, or http on loopback", ru)
		}
	}
	// Shown to people: no control or format characters (bidi overrides
	// could make it read as another name), at most maxClientName runes.
	name := strings.TrimSpace(strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			return -1
		}
		return r
	}, reg.ClientName))
	if r := []rune(name); len(r) > maxClientName {
		name = string(r[:maxClientName])
	}
	if name == "" {
		name = "an unnamed client"
	}
	return &client{id: "pc-" + rand.Text(), name: name, redirects: slices.Clone(reg.RedirectURIs), native: native, s: s}, nil
}

func registrationError(w http.ResponseWriter, code, desc string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusBadRequest)
	json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
}
