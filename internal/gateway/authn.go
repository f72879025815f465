package gateway

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/identity"
	"github.com/portcullis-dev/portcullis/internal/token"
)

// ErrUnknownAgent is returned for a valid token naming an agent that is not
// (or no longer) in the configuration.
var ErrUnknownAgent = errors.New("agent not configured")

// maxCachedTokens bounds the verified-token cache.
const maxCachedTokens = 4096

// TokenAuthenticator authenticates agents by the gateway's signed tokens.
// Signature checks are cached per token (keyed by its hash) until the token
// expires, so the per-request cost is a hash and a map lookup; the agent's
// configuration is consulted on every request.
type TokenAuthenticator struct {
	v      *token.Verifier
	agents map[string]config.Agent
	now    func() time.Time

	mu    sync.Mutex
	cache map[[32]byte]token.Claims
}

// NewTokenAuthenticator returns an authenticator for the configured agents.
func NewTokenAuthenticator(v *token.Verifier, agents []config.Agent, now func() time.Time) *TokenAuthenticator {
	m := map[string]config.Agent{}
	for _, a := range agents {
		m[a.Name] = a
	}
	if now == nil {
		now = time.Now
	}
	return &TokenAuthenticator{v: v, agents: m, now: now, cache: map[[32]byte]token.Claims{}}
}

// Authenticate implements mcpproxy.Authenticator.
func (a *TokenAuthenticator) Authenticate(r *http.Request) (*identity.Principal, error) {
	h := r.Header.Get("Authorization")
	scheme, raw, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || raw == "" {
		return nil, errors.New("no bearer token")
	}
	return a.Principal(strings.TrimSpace(raw))
}

// Principal verifies a raw token and returns its principal.
func (a *TokenAuthenticator) Principal(raw string) (*identity.Principal, error) {
	c, err := a.verify(raw)
	if err != nil {
		return nil, err
	}
	ag, ok := a.agents[c.Agent]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownAgent, c.Agent)
	}
	return &identity.Principal{
		Agent: ag.Name, Roles: ag.Roles, CredentialID: c.ID, Method: "token", Expires: c.Expires,
	}, nil
}

func (a *TokenAuthenticator) verify(raw string) (token.Claims, error) {
	if len(raw) > token.MaxTokenBytes {
		return token.Claims{}, token.ErrMalformed
	}
	key := sha256.Sum256([]byte(raw))
	now := a.now()
	a.mu.Lock()
	c, ok := a.cache[key]
	a.mu.Unlock()
	if ok {
		if now.After(c.Expires.Add(token.Leeway)) {
			return token.Claims{}, token.ErrExpired
		}
		return c, nil
	}
	c, err := a.v.Verify(raw)
	if err != nil {
		return token.Claims{}, err
	}
	a.mu.Lock()
	if len(a.cache) >= maxCachedTokens {
		for k, v := range a.cache {
			if now.After(v.Expires.Add(token.Leeway)) || len(a.cache) >= maxCachedTokens {
				delete(a.cache, k)
			}
		}
	}
	a.cache[key] = c
	a.mu.Unlock()
	return c, nil
}
