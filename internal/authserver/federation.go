package authserver

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// Federation signs people in through the organisation's identity
// provider (OpenID Connect, authorization code with PKCE) instead of, or
// besides, local passwords: the person the provider vouches for is the
// one who consents.
type Federation struct {
	Issuer, ClientID, ClientSecret string
	// UserClaim names the person in the provider's ID token (default
	// "email", else "sub").
	UserClaim string
}

// FederatedPath is where the identity provider sends people back.
const (
	FederatePath  = "/oauth2/federate"
	FederatedPath = "/oauth2/federated"
	fedTimeout    = 10 * time.Second
)

// federation is the server's side of it: the provider, discovered on
// first use, and the sign-ins in flight by state.
type federation struct {
	cfg      Federation
	redirect string
	http     *http.Client

	mu       sync.Mutex
	verifier *oidc.IDTokenVerifier
	oauth    *oauth2.Config
	failed   time.Time
}

// fedSignIn is a sign-in at the provider in flight for an authorization
// request.
type fedSignIn struct {
	state, verifier, nonce string
}

func (f *federation) discover(ctx context.Context) (*oidc.IDTokenVerifier, *oauth2.Config, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.verifier != nil {
		return f.verifier, f.oauth, nil
	}
	if !f.failed.IsZero() && time.Since(f.failed) < 30*time.Second {
		return nil, nil, errors.New("the identity provider could not be reached lately")
	}
	ctx, cancel := context.WithTimeout(oidc.ClientContext(ctx, f.http), fedTimeout)
	defer cancel()
	p, err := oidc.NewProvider(ctx, f.cfg.Issuer)
	if err != nil {
		f.failed = time.Now()
		return nil, nil, fmt.Errorf("identity provider %s: %w", f.cfg.Issuer, err)
	}
	f.verifier = p.Verifier(&oidc.Config{ClientID: f.cfg.ClientID})
	ep := p.Endpoint()
	if f.cfg.ClientSecret == "" {
		ep.AuthStyle = oauth2.AuthStyleInParams // a public client names itself
	}
	f.oauth = &oauth2.Config{ClientID: f.cfg.ClientID, ClientSecret: f.cfg.ClientSecret, Endpoint: ep,
		RedirectURL: f.redirect, Scopes: []string{oidc.ScopeOpenID, "email"}}
	return f.verifier, f.oauth, nil
}

// serveFederate sends the person of an authorization request to the
// identity provider.
func (s *Server) serveFederate(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBody)
	if s.fed == nil || r.ParseForm() != nil {
		http.NotFound(w, r)
		return
	}
	a, err := s.st.request(r.PostForm.Get("id"))
	if err != nil || subtle.ConstantTimeCompare([]byte(r.PostForm.Get("csrf")), []byte(a.csrf)) != 1 {
		secureHeaders(w, "")
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, "<!doctype html><p>This sign-in request is unknown, expired or forged: start again from your client.</p>")
		return
	}
	_, oc, err := s.fed.discover(r.Context())
	if err != nil {
		s.o.Log.Warn("federated sign-in unavailable", "err", err)
		s.render(w, http.StatusBadGateway, a, "The identity provider cannot be reached; try again later.")
		return
	}
	in := fedSignIn{state: rand.Text(), verifier: oauth2.GenerateVerifier(), nonce: rand.Text()}
	s.st.federate(a.id, in)
	http.Redirect(w, r, oc.AuthCodeURL(in.state, oauth2.S256ChallengeOption(in.verifier), oidc.Nonce(in.nonce)), http.StatusFound)
}

// serveFederated takes the person back from the identity provider: the
// code is exchanged, the ID token verified (issuer, audience, expiry,
// nonce), and the person it names goes on to consent.
func (s *Server) serveFederated(w http.ResponseWriter, r *http.Request) {
	if s.fed == nil {
		http.NotFound(w, r)
		return
	}
	q := r.URL.Query()
	a, in := s.st.federated(q.Get("state"))
	if a == nil {
		secureHeaders(w, "")
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, "<!doctype html><p>This sign-in is unknown, already used or expired: start again from your client.</p>")
		return
	}
	fail := func(why string, err error) {
		s.o.Event(Event{Kind: EventRefused, Client: a.req.ClientID, Detail: "federated sign-in: " + why, Deny: true})
		s.o.Log.Warn("federated sign-in refused", "why", why, "err", err)
		s.render(w, http.StatusUnauthorized, a, "The identity provider did not sign you in.")
	}
	if e := q.Get("error"); e != "" {
		fail("the provider answered "+oneLine(e, 64), nil)
		return
	}
	v, oc, err := s.fed.discover(r.Context())
	if err != nil {
		fail("provider unavailable", err)
		return
	}
	ctx, cancel := context.WithTimeout(oidc.ClientContext(r.Context(), s.fed.http), fedTimeout)
	defer cancel()
	tok, err := oc.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(in.verifier))
	if err != nil {
		fail("code exchange failed", err)
		return
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := v.Verify(ctx, raw)
	if err != nil || subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(in.nonce)) != 1 {
		fail("ID token refused", err)
		return
	}
	var claims map[string]any
	if err := idt.Claims(&claims); err != nil {
		fail("ID token claims", err)
		return
	}
	claim := s.fed.cfg.UserClaim
	if claim == "" {
		claim = "email"
		if _, ok := claims[claim].(string); !ok {
			claim = "sub"
		}
	}
	user, _ := claims[claim].(string)
	if user == "" || len(user) > 256 {
		fail("the ID token names nobody in "+claim, nil)
		return
	}
	s.st.signedIn(a.id, user)
	s.render(w, http.StatusOK, a, "")
}

func oneLine(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
