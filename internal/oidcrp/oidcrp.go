// Package oidcrp is Portcullis as an OpenID Connect relying party, where
// a person signs in through the organisation's identity provider (the
// built-in authorization server's federation, the console's sign-in):
// discovery (retried no sooner than 30 s after a failure), the
// authorization code flow with PKCE and a nonce, and the ID token
// verified (issuer, audience, expiry, nonce) before its claims are read.
package oidcrp

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

// Timeout bounds one call to the provider.
const Timeout = 10 * time.Second

// Provider is the identity provider as one client of it sees it.
type Provider struct {
	Issuer, ClientID, ClientSecret, RedirectURL string
	Scopes                                      []string // beyond openid
	HTTP                                        *http.Client

	mu       sync.Mutex
	verifier *oidc.IDTokenVerifier
	oauth    *oauth2.Config
	failed   time.Time
}

// Discover returns the provider's token verifier and OAuth endpoints,
// found on first use (not tied to the asking request: a client that goes
// away does not count as the provider failing).
func (p *Provider) Discover(ctx context.Context) (*oidc.IDTokenVerifier, *oauth2.Config, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.verifier != nil {
		return p.verifier, p.oauth, nil
	}
	if !p.failed.IsZero() && time.Since(p.failed) < 30*time.Second {
		return nil, nil, errors.New("the identity provider could not be reached lately")
	}
	ctx, cancel := context.WithTimeout(oidc.ClientContext(context.WithoutCancel(ctx), p.HTTP), Timeout)
	defer cancel()
	prov, err := oidc.NewProvider(ctx, p.Issuer)
	if err != nil {
		p.failed = time.Now()
		return nil, nil, fmt.Errorf("identity provider %s: %w", p.Issuer, err)
	}
	p.verifier = prov.Verifier(&oidc.Config{ClientID: p.ClientID})
	ep := prov.Endpoint()
	if p.ClientSecret == "" {
		ep.AuthStyle = oauth2.AuthStyleInParams // a public client names itself
	}
	p.oauth = &oauth2.Config{ClientID: p.ClientID, ClientSecret: p.ClientSecret, Endpoint: ep, RedirectURL: p.RedirectURL,
		Scopes: append([]string{oidc.ScopeOpenID}, p.Scopes...)}
	return p.verifier, p.oauth, nil
}

// Flow is one sign-in in flight: its state, PKCE verifier and nonce.
type Flow struct {
	State, Verifier, Nonce string
}

// NewFlow starts a sign-in.
func NewFlow() Flow {
	return Flow{State: rand.Text(), Verifier: oauth2.GenerateVerifier(), Nonce: rand.Text()}
}

// AuthURL is where the person goes to sign in for f.
func (p *Provider) AuthURL(ctx context.Context, f Flow) (string, error) {
	_, oc, err := p.Discover(ctx)
	if err != nil {
		return "", err
	}
	return oc.AuthCodeURL(f.State, oauth2.S256ChallengeOption(f.Verifier), oidc.Nonce(f.Nonce)), nil
}

// Finish exchanges the code the provider sent back for f and returns the
// verified ID token and its claims; why names the step that failed.
func (p *Provider) Finish(ctx context.Context, code string, f Flow) (idt *oidc.IDToken, claims map[string]any, why string, err error) {
	v, oc, err := p.Discover(ctx)
	if err != nil {
		return nil, nil, "provider unavailable", err
	}
	ctx, cancel := context.WithTimeout(oidc.ClientContext(ctx, p.HTTP), Timeout)
	defer cancel()
	tok, err := oc.Exchange(ctx, code, oauth2.VerifierOption(f.Verifier))
	if err != nil {
		return nil, nil, "code exchange failed", err
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err = v.Verify(ctx, raw)
	if err != nil {
		return nil, nil, "ID token refused", err
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(f.Nonce)) != 1 {
		return nil, nil, "ID token refused", errors.New("nonce mismatch")
	}
	if err := idt.Claims(&claims); err != nil {
		return nil, nil, "ID token claims", err
	}
	return idt, claims, "", nil
}
