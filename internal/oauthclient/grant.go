package oauthclient

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/auth/extauth"
	"github.com/modelcontextprotocol/go-sdk/oauthex"
	"golang.org/x/oauth2"

	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/netguard"
	"github.com/portcullis-dev/portcullis/internal/reason"
	"github.com/portcullis-dev/portcullis/internal/transport"
)

// Grant is the gateway's authorization towards one upstream (for one user,
// or the operator's): an auth.OAuthHandler shared by every connection that
// uses it.
type Grant struct {
	b        *Broker
	key      grantKey
	upstream string
	userName string // as events name the user ("" for the operator's grant)
	resource string // the upstream's URL: a sealed token is for it only
	perUser  bool
	cc       bool // client credentials
	http     *http.Client

	h auth.OAuthHandler
	// ccSem serialises client credentials authorizations (the SDK's
	// handler does not lock); ccToken is the token source they set, read
	// without waiting.
	ccSem   chan struct{}
	ccToken atomic.Pointer[tokenSource]

	mu      sync.Mutex // guards what follows
	pending *flow
	// recent are the times of the authorizations completed lately: an
	// upstream that keeps refusing after each is not asked again (no
	// authorization loop).
	recent []time.Time
	// failed is the last authorization's failure and when it came: it is
	// the answer for failWait (no discovery, no event per request).
	failed   error
	failedAt time.Time
}

type tokenSource struct{ oauth2.TokenSource }

// Bounds on repeated authorization: at most maxRounds completed in
// roundsWindow; a failure is the answer for failWait.
const (
	maxRounds    = 3
	roundsWindow = 10 * time.Minute
	failWait     = 30 * time.Second
)

// flow is one authorization code flow waiting for its person.
type flow struct {
	g       *Grant
	id      string
	state   string
	url     string
	expires time.Time
	fetched bool          // the SDK asked for a code (set before ready closes)
	ready   chan struct{} // closed once url is known
	result  chan result   // the callback's
	done    chan struct{} // closed when the flow ended; err says how
	err     error
}

type result struct {
	code, state, iss string
	err              error
}

func (b *Broker) newGrant(k grantKey, userName string, srv *config.HTTPServer) (*Grant, error) {
	cfg := srv.OAuth
	g := &Grant{b: b, key: k, upstream: k.upstream, userName: userName, resource: srv.URL,
		perUser: cfg.PerUser && k.user != "", cc: cfg.Grant == config.GrantClientCredentials, http: b.http, ccSem: make(chan struct{}, 1)}
	if cfg.PrivateNetworks || onPrivateNetwork(srv.URL) {
		g.http = b.private
	}
	var secret string
	if cfg.ClientSecret != nil {
		s, err := b.o.Resolve(*cfg.ClientSecret)
		if err != nil {
			return nil, fmt.Errorf("client_secret: %w", err)
		}
		secret = s
	}
	if g.cc {
		h, err := extauth.NewClientCredentialsHandler(&extauth.ClientCredentialsHandlerConfig{
			Credentials: &oauthex.ClientCredentials{ClientID: cfg.ClientID, ClientSecretAuth: &oauthex.ClientSecretAuth{ClientSecret: secret}, Issuer: cfg.Issuer},
			HTTPClient:  g.http,
		})
		if err != nil {
			return nil, err
		}
		g.h = h
		return g, nil
	}
	if b.o.PublicURL() == "" {
		return nil, errors.New("authorization_code needs the gateway's public URL (listen.public_url) for its redirect URI")
	}
	redirect := b.RedirectURL(k.upstream)
	ac := &auth.AuthorizationCodeHandlerConfig{
		RedirectURL: redirect,
		DynamicClientRegistrationConfig: &auth.DynamicClientRegistrationConfig{Metadata: &oauthex.ClientRegistrationMetadata{
			RedirectURIs: []string{redirect},
			ClientName:   "Portcullis gateway",
			GrantTypes:   []string{"authorization_code", "refresh_token"},
		}},
		AuthorizationCodeFetcher: g.fetch,
		RequestRefreshToken:      true,
		Client:                   g.http,
		NewTokenSource: func(ctx context.Context, c *oauth2.Config, t *oauth2.Token) (oauth2.TokenSource, error) {
			return g.saving(ctx, c, t), nil
		},
	}
	if cfg.ClientMetadataURL != "" {
		ac.ClientIDMetadataDocumentConfig = &auth.ClientIDMetadataDocumentConfig{URL: cfg.ClientMetadataURL}
	}
	if cfg.ClientID != "" {
		ac.PreregisteredClient = &oauthex.ClientCredentials{ClientID: cfg.ClientID, Issuer: cfg.Issuer}
		if secret != "" {
			ac.PreregisteredClient.ClientSecretAuth = &oauthex.ClientSecretAuth{ClientSecret: secret}
		}
	}
	if len(cfg.Scopes) > 0 {
		scopes := cfg.Scopes
		ac.ScopeFilter = func([]string) []string { return scopes }
	}
	if ts := g.restore(); ts != nil {
		ac.InitialTokenSource = ts
	}
	h, err := auth.NewAuthorizationCodeHandler(ac)
	if err != nil {
		return nil, err
	}
	g.h = h
	return g, nil
}

// onPrivateNetwork reports whether an upstream's URL names loopback or a
// private address (its authorization server may then be there too).
func onPrivateNetwork(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil {
		return false
	}
	if u.Hostname() == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(u.Hostname())
	return err == nil && netguard.Private(ip)
}

// TokenSource implements auth.OAuthHandler.
func (g *Grant) TokenSource(ctx context.Context) (oauth2.TokenSource, error) {
	if g.cc {
		if ts := g.ccToken.Load(); ts != nil {
			return ts.TokenSource, nil
		}
		return nil, nil
	}
	return g.h.TokenSource(ctx)
}

// recentFailure is the last failure while it is the answer (g.mu held).
func (g *Grant) recentFailure() error {
	if g.failed != nil && time.Since(g.failedAt) < failWait {
		return g.failed
	}
	return nil
}

// Authorize implements auth.OAuthHandler: the upstream refused req with
// resp (401 or 403). With client credentials the gateway obtains a token
// at once. With an authorization code a flow starts (or the one waiting
// is joined) and the caller gets an *transport.AuthorizationRequired
// naming its URL; the flow goes on without it. A user's flow starts only
// for a request that may ask them (transport.Prompting: a call).
func (g *Grant) Authorize(ctx context.Context, req *http.Request, resp *http.Response) error {
	if g.cc {
		return g.authorizeClient(ctx, req, resp)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	g.mu.Lock()
	f := g.pending
	if f == nil {
		if err := g.recentFailure(); err != nil {
			g.mu.Unlock()
			return err
		}
		if g.looping() {
			g.mu.Unlock()
			return fmt.Errorf("upstream %s still refuses after %d authorizations in %s; not asking again yet", g.upstream, maxRounds, roundsWindow)
		}
		if g.perUser && !transport.Prompting(ctx) {
			g.mu.Unlock()
			return &transport.AuthorizationRequired{Upstream: g.upstream, User: g.userName, PerUser: true}
		}
		f = &flow{g: g, id: rand.Text(), ready: make(chan struct{}), result: make(chan result, 1), done: make(chan struct{})}
		g.pending = f
		// The flow outlives the request that started it: it gets a copy
		// of what discovery needs (the URL and the challenge).
		r := req.Clone(context.WithoutCancel(ctx))
		r.Body = http.NoBody
		challenge := &http.Response{StatusCode: resp.StatusCode, Header: resp.Header.Clone(), Body: http.NoBody, Request: r}
		go g.run(f, r, challenge)
	}
	g.mu.Unlock()
	select {
	case <-f.ready:
		return &transport.AuthorizationRequired{Upstream: g.upstream, User: g.userName, PerUser: g.perUser, ID: f.id, URL: f.url, Expires: f.expires}
	case <-f.done:
		return f.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// looping reports whether maxRounds authorizations completed within
// roundsWindow (g.mu held).
func (g *Grant) looping() bool {
	cut := time.Now().Add(-roundsWindow)
	for len(g.recent) > 0 && g.recent[0].Before(cut) {
		g.recent = g.recent[1:]
	}
	return len(g.recent) >= maxRounds
}

// ended records how an authorization ended (g.mu held).
func (g *Grant) ended(err error) {
	if err == nil {
		g.recent = append(g.recent, time.Now())
		g.failed = nil
	} else {
		g.failed, g.failedAt = err, time.Now()
	}
}

// authorizeClient obtains a token with the client credentials: one
// authorization at a time (a caller waits as long as its context lets
// it), a failure the answer for failWait.
func (g *Grant) authorizeClient(ctx context.Context, req *http.Request, resp *http.Response) error {
	defer resp.Body.Close()
	select {
	case g.ccSem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-g.ccSem }()
	g.mu.Lock()
	err := g.recentFailure()
	if err == nil && g.looping() {
		err = fmt.Errorf("upstream %s still refuses after %d authorizations in %s; not asking again yet", g.upstream, maxRounds, roundsWindow)
	}
	g.mu.Unlock()
	if err != nil {
		return err
	}
	// The token source keeps the context for its renewals: not the
	// request's, which ends. Each request is bounded by the client.
	bg := context.WithoutCancel(ctx)
	var ts oauth2.TokenSource
	if err = g.h.Authorize(bg, req, resp); err == nil {
		if ts, err = g.h.TokenSource(bg); err == nil && ts != nil {
			_, err = ts.Token()
		}
	}
	g.mu.Lock()
	g.ended(err)
	g.mu.Unlock()
	if err != nil {
		g.b.o.Event(Event{Upstream: g.upstream, Code: reason.UpstreamAuthorizationFailed, Detail: err.Error()})
		return err
	}
	if ts != nil {
		g.ccToken.Store(&tokenSource{ts})
	}
	g.b.o.Event(Event{Upstream: g.upstream, Code: reason.UpstreamAuthorized, Detail: "client credentials"})
	g.b.o.Authorized(Authorized{Upstream: g.upstream})
	return nil
}

// run carries one authorization code flow to its end.
func (g *Grant) run(f *flow, req *http.Request, challenge *http.Response) {
	ctx, cancel := context.WithTimeout(context.Background(), g.b.o.FlowTTL)
	err := g.h.Authorize(ctx, req, challenge)
	cancel()
	g.b.forget(f)
	g.mu.Lock()
	if g.pending == f {
		g.pending = nil
	}
	fetched := f.fetched
	if fetched || err != nil {
		g.ended(err)
	}
	g.mu.Unlock()
	// Whoever waits on the flow (the callback's page) learns its end once
	// everything it implies is done.
	defer close(f.done)
	f.err = err
	if err == nil && !fetched {
		return // the challenge asked for nothing the SDK acts on: no authorization happened
	}
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			err = errors.New("nobody completed the authorization in time")
		}
		g.b.o.Log.Warn("upstream authorization failed", "upstream", g.upstream, "user", g.userName, "err", err)
		g.b.o.Event(Event{Upstream: g.upstream, User: g.userName, Code: reason.UpstreamAuthorizationFailed, Detail: err.Error()})
		return
	}
	g.b.o.Log.Info("upstream authorized", "upstream", g.upstream, "user", g.userName)
	g.b.o.Event(Event{Upstream: g.upstream, User: g.userName, Code: reason.UpstreamAuthorized, Detail: "authorization code"})
	g.b.o.Authorized(Authorized{Upstream: g.upstream, User: g.key.user, ID: f.id, PerUser: g.perUser})
}

// fetch is the SDK's AuthorizationCodeFetcher: it publishes the
// authorization URL and waits for the callback.
func (g *Grant) fetch(ctx context.Context, args *auth.AuthorizationArgs) (*auth.AuthorizationResult, error) {
	g.mu.Lock()
	f := g.pending
	g.mu.Unlock()
	if f == nil {
		return nil, errors.New("no authorization in progress")
	}
	u, err := url.Parse(args.URL)
	if err != nil {
		return nil, err
	}
	f.state, f.url, f.expires = u.Query().Get("state"), args.URL, time.Now().Add(g.b.o.FlowTTL)
	if f.state == "" {
		return nil, errors.New("authorization URL without state")
	}
	if err := g.b.register(f); err != nil {
		return nil, err
	}
	f.fetched = true
	close(f.ready)
	detail := "at " + u.Scheme + "://" + u.Host
	g.b.o.Event(Event{Upstream: g.upstream, User: g.userName, Code: reason.UpstreamAuthorizationRequested, Detail: detail})
	if !g.perUser {
		// Not the URL: whoever opens it binds their account for every
		// user, and logs are read more widely than the admin API.
		g.b.o.Log.Warn("upstream needs an operator's authorization: GET /v1/upstreams/authorizations on the admin listener gives the URL to open", "upstream", g.upstream, "flow", f.id, "expires", f.expires.Format(time.RFC3339))
	}
	select {
	case r := <-f.result:
		if r.err != nil {
			return nil, r.err
		}
		return &auth.AuthorizationResult{Code: r.code, State: r.state, Iss: r.iss}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// record is a grant's token as sealed in the vault, with what renewing it
// needs.
type record struct {
	// Resource and User say whose token it is for which upstream URL: a
	// token restored for another (the upstream moved) is discarded.
	Resource     string           `json:"resource"`
	User         string           `json:"user,omitempty"`
	ClientID     string           `json:"client_id"`
	ClientSecret string           `json:"client_secret,omitempty"`
	TokenURL     string           `json:"token_url"`
	AuthStyle    oauth2.AuthStyle `json:"auth_style"`
	Scopes       []string         `json:"scopes,omitempty"`
	Token        *oauth2.Token    `json:"token"`
}

// saving returns a token source for t that seals every new token in the
// vault (a refresh may rotate the refresh token).
func (g *Grant) saving(ctx context.Context, c *oauth2.Config, t *oauth2.Token) oauth2.TokenSource {
	s := &savingSource{g: g, cfg: c, src: c.TokenSource(ctx, t)}
	s.save(t)
	return s
}

type savingSource struct {
	g   *Grant
	cfg *oauth2.Config
	src oauth2.TokenSource

	mu   sync.Mutex
	last string
}

func (s *savingSource) Token() (*oauth2.Token, error) {
	t, err := s.src.Token()
	if err != nil {
		return nil, err
	}
	s.save(t)
	return t, nil
}

func (s *savingSource) save(t *oauth2.Token) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t.AccessToken == s.last {
		return
	}
	s.last = t.AccessToken
	b, err := json.Marshal(record{Resource: s.g.resource, User: s.g.key.user, ClientID: s.cfg.ClientID, ClientSecret: s.cfg.ClientSecret, TokenURL: s.cfg.Endpoint.TokenURL, AuthStyle: s.cfg.Endpoint.AuthStyle, Scopes: s.cfg.Scopes, Token: t})
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = s.g.b.o.Vault.Put(ctx, vaultName(s.g.key), b)
		cancel()
	}
	if err != nil {
		// The token still works in memory; after a restart it must be
		// authorized again.
		s.g.b.o.Log.Error("upstream token not saved", "upstream", s.g.upstream, "err", err)
	}
}

// restore returns the token source of a grant's sealed token, if any.
func (g *Grant) restore() oauth2.TokenSource {
	if g.b.o.Vault == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	v, err := g.b.o.Vault.Get(ctx, vaultName(g.key))
	if err != nil {
		return nil // none yet (or unreadable: authorize again)
	}
	var r record
	if err := json.Unmarshal([]byte(v.Reveal()), &r); err != nil || r.Token == nil || r.TokenURL == "" || !config.SecureURL(r.TokenURL) ||
		r.Resource != g.resource || r.User != g.key.user {
		g.b.o.Log.Warn("sealed upstream token unusable; authorizing again", "upstream", g.upstream)
		return nil
	}
	c := &oauth2.Config{ClientID: r.ClientID, ClientSecret: r.ClientSecret, Endpoint: oauth2.Endpoint{TokenURL: r.TokenURL, AuthStyle: r.AuthStyle}, Scopes: r.Scopes}
	ctx = context.WithValue(context.Background(), oauth2.HTTPClient, g.http)
	s := &savingSource{g: g, cfg: c, src: c.TokenSource(ctx, r.Token), last: r.Token.AccessToken}
	return s
}
