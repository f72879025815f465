package authserver

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// Bounds of what the server keeps in memory.
const (
	maxRequests       = 1024             // authorization requests waiting for a person
	maxClientRequests = 16               // of them, for one client
	maxClients        = 1024             // registered clients (the oldest without tokens forgotten first)
	maxRefreshTokens  = 10000            // live refresh tokens
	maxRotated        = 10000            // rotated refresh tokens remembered (replay detection)
	requestTTL        = 10 * time.Minute // an authorization request's life
	unopenedTTL       = 2 * time.Minute  // one whose sign-in page nobody opened
	codeTTL           = time.Minute      // from code to token
)

// authRequest is one authorization request: created by the authorize
// endpoint, completed by a person on the login page.
type authRequest struct {
	id       string
	created  time.Time
	aud      []string // the resource: this server's tokens are for the gateway only
	req      oidc.AuthRequest
	csrf     string    // the login form's anti-forgery token
	attempts int       // failed sign-ins
	opened   bool      // someone opened its sign-in page
	fed      fedSignIn // the sign-in at the identity provider in flight
	fedUser  string    // the person the identity provider signed in

	done     bool
	user     string
	agent    string
	authTime time.Time
	code     string
	codeAt   time.Time
}

func (a *authRequest) GetID() string         { return a.id }
func (a *authRequest) GetACR() string        { return "" }
func (a *authRequest) GetAMR() []string      { return []string{"pwd"} }
func (a *authRequest) GetAudience() []string { return a.aud }
func (a *authRequest) GetAuthTime() time.Time {
	return a.authTime
}
func (a *authRequest) GetClientID() string { return a.req.ClientID }
func (a *authRequest) GetCodeChallenge() *oidc.CodeChallenge {
	return &oidc.CodeChallenge{Challenge: a.req.CodeChallenge, Method: a.req.CodeChallengeMethod}
}
func (a *authRequest) GetNonce() string                   { return a.req.Nonce }
func (a *authRequest) GetRedirectURI() string             { return a.req.RedirectURI }
func (a *authRequest) GetResponseType() oidc.ResponseType { return a.req.ResponseType }
func (a *authRequest) GetResponseMode() oidc.ResponseMode { return a.req.ResponseMode }
func (a *authRequest) GetScopes() []string                { return a.req.Scopes }
func (a *authRequest) GetState() string                   { return a.req.State }
func (a *authRequest) GetSubject() string                 { return a.user }
func (a *authRequest) Done() bool                         { return a.done }

// family is the grant's ID: the request's (one consent).
func (a *authRequest) family() string { return "g-" + a.id[:16] }

// refreshToken is a live refresh token (rotated at every use). Family
// names the grant it descends from (the person's consent): every access
// token of the family carries it (sid), so that revoking it revokes them
// all, and a rotated token presented again revokes the family.
type refreshToken struct {
	token    string
	family   string
	aud      []string
	client   string
	user     string
	agent    string
	granted  []string // the scopes consented to
	scopes   []string // those of this request (may narrow granted)
	authTime time.Time
	expires  time.Time
}

func (r *refreshToken) GetAMR() []string                 { return []string{"pwd"} }
func (r *refreshToken) GetAudience() []string            { return r.aud }
func (r *refreshToken) GetAuthTime() time.Time           { return r.authTime }
func (r *refreshToken) GetClientID() string              { return r.client }
func (r *refreshToken) GetScopes() []string              { return r.scopes }
func (r *refreshToken) GetSubject() string               { return r.user }
func (r *refreshToken) SetCurrentScopes(scopes []string) { r.scopes = scopes } // on the request's copy

// storage is the op.Storage of the built-in server: clients, requests
// and refresh tokens in memory (a restart signs everyone out), and one
// signing key.
type storage struct {
	s *Server

	mu       sync.Mutex
	requests map[string]*authRequest
	codes    map[string]string // code -> request id
	clients  map[string]*client
	order    []string // client IDs, oldest first
	refresh  map[string]*refreshToken
	rotated  map[string]string // rotated-away refresh token -> family
	fedState map[string]string // federated sign-in state -> request id
}

func newStorage(s *Server) *storage {
	return &storage{s: s, requests: map[string]*authRequest{}, codes: map[string]string{},
		clients: map[string]*client{}, refresh: map[string]*refreshToken{}, rotated: map[string]string{}, fedState: map[string]string{}}
}

// sweep forgets expired requests, codes and refresh tokens (st.mu held).
func (st *storage) sweep(now time.Time) {
	for id, a := range st.requests {
		if age := now.Sub(a.created); age > requestTTL || (!a.opened && age > unopenedTTL) {
			delete(st.requests, id)
			if a.code != "" {
				delete(st.codes, a.code)
			}
			delete(st.fedState, a.fed.state)
		}
	}
	for t, r := range st.refresh {
		if now.After(r.expires) {
			delete(st.refresh, t)
		}
	}
}

func (st *storage) CreateAuthRequest(_ context.Context, req *oidc.AuthRequest, _ string) (op.AuthRequest, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	now := st.s.now()
	st.sweep(now)
	if len(st.requests) >= maxRequests {
		return nil, oidc.ErrServerError().WithDescription("too many authorization requests waiting")
	}
	if req.CodeChallenge == "" || req.CodeChallengeMethod != oidc.CodeChallengeMethodS256 {
		return nil, oidc.ErrInvalidRequest().WithDescription("PKCE with S256 is required")
	}
	n := 0
	for _, a := range st.requests {
		if a.req.ClientID == req.ClientID {
			n++
		}
	}
	if n >= maxClientRequests {
		return nil, oidc.ErrServerError().WithDescription("too many authorization requests waiting for this client")
	}
	a := &authRequest{id: rand.Text(), created: now, aud: []string{st.s.o.Resource}, req: *req, csrf: rand.Text()}
	// Every token of this server is for the gateway's MCP endpoint.
	if !slices.Contains(a.req.Scopes, ScopeMCP) {
		a.req.Scopes = append(slices.Clone(a.req.Scopes), ScopeMCP)
	}
	st.requests[a.id] = a
	return a, nil
}

func (st *storage) request(id string) (*authRequest, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	a, ok := st.requests[id]
	if !ok || st.s.now().Sub(a.created) > requestTTL {
		return nil, errors.New("unknown or expired authorization request")
	}
	return a, nil
}

// opened marks that someone opened request id's sign-in page (it then
// lives its full requestTTL).
func (st *storage) open(id string) (*authRequest, error) {
	a, err := st.request(id)
	if err == nil {
		st.mu.Lock()
		a.opened = true
		st.mu.Unlock()
	}
	return a, err
}

func (st *storage) AuthRequestByID(_ context.Context, id string) (op.AuthRequest, error) {
	return st.request(id)
}

// AuthRequestByCode consumes the code: a second exchange, even a
// concurrent one, finds nothing.
func (st *storage) AuthRequestByCode(_ context.Context, code string) (op.AuthRequest, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	id, ok := st.codes[code]
	delete(st.codes, code)
	a := st.requests[id]
	if !ok || a == nil || st.s.now().Sub(a.codeAt) > codeTTL {
		return nil, errors.New("invalid or expired code")
	}
	return a, nil
}

func (st *storage) SaveAuthCode(_ context.Context, id, code string) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	a, ok := st.requests[id]
	if !ok || !a.done {
		return errors.New("unknown or incomplete authorization request")
	}
	if a.code != "" {
		return errors.New("this authorization request already has its code")
	}
	a.code, a.codeAt = code, st.s.now()
	st.codes[code] = id
	return nil
}

// DeleteAuthRequest is called once a code was exchanged: the code and its
// request are single use.
func (st *storage) DeleteAuthRequest(_ context.Context, id string) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if a := st.requests[id]; a != nil && a.code != "" {
		delete(st.codes, a.code)
	}
	delete(st.requests, id)
	return nil
}

// federate records the sign-in at the identity provider that request id
// waits for (a new one replaces the previous).
func (st *storage) federate(id string, in fedSignIn) {
	st.mu.Lock()
	defer st.mu.Unlock()
	a, ok := st.requests[id]
	if !ok {
		return
	}
	delete(st.fedState, a.fed.state)
	a.fed = in
	st.fedState[in.state] = id
}

// federated consumes the sign-in with state, returning its request.
func (st *storage) federated(state string) (*authRequest, fedSignIn) {
	st.mu.Lock()
	defer st.mu.Unlock()
	id, ok := st.fedState[state]
	delete(st.fedState, state)
	a := st.requests[id]
	if !ok || a == nil || a.done || st.s.now().Sub(a.created) > requestTTL {
		return nil, fedSignIn{}
	}
	in := a.fed
	a.fed = fedSignIn{}
	return a, in
}

// signedIn records the person the identity provider vouched for.
func (st *storage) signedIn(id, user string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if a := st.requests[id]; a != nil {
		a.fedUser = user
	}
}

// complete records the person's consent on request id.
func (st *storage) complete(id, user, agent string) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	a, ok := st.requests[id]
	if !ok || a.done {
		return errors.New("unknown or completed authorization request")
	}
	a.done, a.user, a.agent, a.authTime = true, user, agent, st.s.now()
	return nil
}

// failedSignIn counts a wrong password; the request is dropped after
// maxAttempts.
func (st *storage) failedSignIn(id string) (dropped bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	a, ok := st.requests[id]
	if !ok {
		return true
	}
	a.attempts++
	if a.attempts >= maxAttempts {
		delete(st.requests, id)
		return true
	}
	return false
}

func (st *storage) CreateAccessToken(context.Context, op.TokenRequest) (string, time.Time, error) {
	now := st.s.now()
	return rand.Text(), now.Add(st.s.o.AccessTTL), nil
}

// CreateAccessAndRefreshTokens issues a new refresh token for an
// authorization code, or rotates current (the old one dies).
func (st *storage) CreateAccessAndRefreshTokens(_ context.Context, req op.TokenRequest, current string) (string, string, time.Time, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	now := st.s.now()
	st.sweep(now)
	var r refreshToken
	switch t := req.(type) {
	case *authRequest:
		r = refreshToken{family: t.family(), aud: t.aud, client: t.req.ClientID, user: t.user, agent: t.agent, granted: t.req.Scopes, scopes: t.req.Scopes, authTime: t.authTime, expires: now.Add(st.s.o.RefreshTTL)}
	case *refreshToken:
		old, ok := st.refresh[current]
		if !ok || old.token != t.token {
			return "", "", time.Time{}, errors.New("invalid refresh token")
		}
		delete(st.refresh, current)
		if len(st.rotated) >= maxRotated {
			clear(st.rotated) // forget the oldest generation (detection only)
		}
		st.rotated[current] = old.family
		r = *old
		r.scopes = t.scopes
	default:
		return "", "", time.Time{}, errors.New("unsupported token request")
	}
	if len(st.refresh) >= maxRefreshTokens {
		return "", "", time.Time{}, errors.New("too many refresh tokens")
	}
	r.token = rand.Text() + rand.Text()
	st.refresh[r.token] = &r
	return rand.Text(), r.token, now.Add(st.s.o.AccessTTL), nil
}

// TokenRequestByRefreshToken returns a copy of the token's grant (the
// provider narrows its scopes in place). A token rotated away and
// presented again was stolen, or its holder's was: the family dies.
func (st *storage) TokenRequestByRefreshToken(_ context.Context, token string) (op.RefreshTokenRequest, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if fam, ok := st.rotated[token]; ok {
		for t, r := range st.refresh {
			if r.family == fam {
				delete(st.refresh, t)
				st.s.o.Event(Event{Kind: EventRefused, User: r.user, Agent: r.agent, Client: r.client, Deny: true,
					Detail: "a rotated refresh token was presented again: the grant is revoked (sid " + fam + ")"})
			}
		}
		return nil, errors.New("invalid refresh token")
	}
	r, ok := st.refresh[token]
	if !ok || st.s.now().After(r.expires) {
		return nil, errors.New("invalid refresh token")
	}
	c := *r
	c.scopes = slices.Clone(r.granted)
	return &c, nil
}

func (st *storage) TerminateSession(_ context.Context, user, clientID string) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	for t, r := range st.refresh {
		if r.user == user && r.client == clientID {
			delete(st.refresh, t)
		}
	}
	return nil
}

func (st *storage) RevokeToken(_ context.Context, token, _, clientID string) *oidc.Error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if r, ok := st.refresh[token]; ok {
		if r.client != clientID {
			return oidc.ErrInvalidClient().WithDescription("not this client's token")
		}
		delete(st.refresh, token)
	}
	// Access tokens are short JWTs, not kept: they are not revocable here.
	return nil
}

func (st *storage) GetRefreshTokenInfo(_ context.Context, clientID, token string) (string, string, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	r, ok := st.refresh[token]
	if !ok || r.client != clientID {
		return "", "", op.ErrInvalidRefreshToken
	}
	return r.user, r.token, nil
}

// GetPrivateClaimsFromRequest puts the agent the person chose in the
// access token.
func (st *storage) GetPrivateClaimsFromRequest(_ context.Context, req op.TokenRequest, _ []string) (map[string]any, error) {
	switch t := req.(type) {
	case *authRequest:
		return map[string]any{AgentClaim: t.agent, "sid": t.family(), "scope": strings.Join(t.req.Scopes, " ")}, nil
	case *refreshToken:
		return map[string]any{AgentClaim: t.agent, "sid": t.family, "scope": strings.Join(t.scopes, " ")}, nil
	}
	return nil, errors.New("unsupported token request")
}

func (st *storage) GetPrivateClaimsFromScopes(context.Context, string, string, []string) (map[string]any, error) {
	return nil, errors.New("tokens are only issued for a person's authorization")
}

type signingKey struct {
	id  string
	key *ecdsa.PrivateKey
}

func (k signingKey) SignatureAlgorithm() jose.SignatureAlgorithm { return jose.ES256 }
func (k signingKey) Key() any                                    { return k.key }
func (k signingKey) ID() string                                  { return k.id }

type publicKey struct{ signingKey }

func (k publicKey) Algorithm() jose.SignatureAlgorithm { return jose.ES256 }
func (k publicKey) Use() string                        { return "sig" }
func (k publicKey) Key() any                           { return &k.key.PublicKey }

func (st *storage) SigningKey(context.Context) (op.SigningKey, error) {
	return signingKey{st.s.keyID, st.s.key}, nil
}

func (st *storage) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{jose.ES256}, nil
}

func (st *storage) KeySet(context.Context) ([]op.Key, error) {
	return []op.Key{publicKey{signingKey{st.s.keyID, st.s.key}}}, nil
}

func (st *storage) GetClientByClientID(ctx context.Context, id string) (op.Client, error) {
	st.mu.Lock()
	c, ok := st.clients[id]
	st.mu.Unlock()
	if ok {
		return c, nil
	}
	if isCIMD(id) {
		c, err := st.s.cimd.get(ctx, id)
		if err != nil {
			return nil, oidc.ErrInvalidClient().WithDescription("%s", err.Error())
		}
		return c, nil
	}
	return nil, oidc.ErrInvalidClient().WithDescription("unknown client")
}

// addClient registers c; when full, the oldest client without a live
// refresh token is forgotten (none: the registration is refused).
func (st *storage) addClient(c *client) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.order) >= maxClients {
		live := map[string]bool{}
		for _, r := range st.refresh {
			live[r.client] = true
		}
		i := slices.IndexFunc(st.order, func(id string) bool { return !live[id] })
		if i < 0 {
			return errors.New("too many registered clients")
		}
		delete(st.clients, st.order[i])
		st.order = slices.Delete(st.order, i, i+1)
	}
	st.clients[c.id] = c
	st.order = append(st.order, c.id)
	return nil
}

// AuthorizeClientIDSecret: every client here is public (PKCE, no secret).
func (st *storage) AuthorizeClientIDSecret(context.Context, string, string) error {
	return errors.New("clients of this server have no secret")
}

func (st *storage) SetUserinfoFromScopes(_ context.Context, ui *oidc.UserInfo, user, _ string, _ []string) error {
	ui.Subject = user
	return nil
}

func (st *storage) SetUserinfoFromToken(_ context.Context, ui *oidc.UserInfo, _, subject, _ string) error {
	ui.Subject = subject
	return nil
}

func (st *storage) SetIntrospectionFromToken(context.Context, *oidc.IntrospectionResponse, string, string, string) error {
	return errors.New("introspection is not offered: access tokens are JWTs")
}

func (st *storage) GetKeyByIDAndClientID(context.Context, string, string) (*jose.JSONWebKey, error) {
	return nil, errors.New("JWT profile is not offered")
}

func (st *storage) ValidateJWTProfileScopes(context.Context, string, []string) ([]string, error) {
	return nil, errors.New("JWT profile is not offered")
}

func (st *storage) Health(context.Context) error { return nil }

// scopesAllowed are the scopes this server grants besides the OIDC ones.
func (s *Server) scopesAllowed(scope string) bool {
	return scope == ScopeMCP || slices.Contains(s.o.Scopes, scope)
}

var _ op.Storage = (*storage)(nil)
var _ op.CanGetPrivateClaimsFromRequest = (*storage)(nil)
