package gateway

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
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
	v     *token.Verifier
	tasks *token.Verifier // task tokens (nil: not accepted)
	dpop  *token.DPoPVerifier
	revs  *revocations // nil: revocation not checked (tests of the authenticator alone)
	ca    *identity.CA
	// trust holds, per trust domain, the authorities its SVIDs must chain
	// to, and for foreign domains which SPIFFE IDs are which agents.
	trust   map[string]*x509.CertPool
	foreign map[string]string // SPIFFE ID -> agent
	agents  map[string]config.Agent
	now     func() time.Time

	mu        sync.Mutex
	cache     map[[32]byte]token.Claims
	taskCache map[[32]byte]token.Task
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
	return &TokenAuthenticator{v: v, agents: m, now: now, cache: map[[32]byte]token.Claims{}, taskCache: map[[32]byte]token.Task{}}
}

// Authenticate implements mcpproxy.Authenticator. Agent tokens come as
// "Bearer"; task tokens, which are sender-constrained, as "DPoP" with a
// proof of possession in the DPoP header (RFC 9449).
func (a *TokenAuthenticator) Authenticate(r *http.Request) (*identity.Principal, error) {
	h := r.Header.Get("Authorization")
	scheme, raw, ok := strings.Cut(h, " ")
	raw = strings.TrimSpace(raw)
	switch {
	case h == "" && clientCert(r) != nil:
		return a.svidPrincipal(clientCert(r))
	case !ok || raw == "":
		return nil, errors.New("no credential")
	case strings.EqualFold(scheme, "DPoP"):
		return a.taskPrincipal(r, raw)
	case strings.EqualFold(scheme, "Bearer"):
		p, err := a.Principal(raw)
		if err != nil && tokenType(raw) == token.TypTask {
			// RFC 8705: a certificate-bound task token comes as Bearer on
			// a mutual-TLS connection with the bound certificate.
			return a.taskPrincipal(r, raw)
		}
		return p, err
	}
	return nil, errors.New("unsupported authorization scheme")
}

// proveHolder checks that the request comes from the holder of the key a
// task token is bound to: the mutual-TLS client certificate (x5t#S256) or a
// DPoP proof for this request (jkt).
func (a *TokenAuthenticator) proveHolder(r *http.Request, t token.Task, raw string) error {
	if t.X5T != "" {
		c := clientCert(r)
		if c == nil || subtle.ConstantTimeCompare([]byte(identity.CertThumbprint(c)), []byte(t.X5T)) != 1 {
			return errors.New("task token bound to another client certificate")
		}
		return nil
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	jkt, err := a.dpop.Verify(r.Header.Get("DPoP"), r.Method, scheme+"://"+r.Host+r.URL.Path, raw)
	if err != nil {
		return err
	}
	if subtle.ConstantTimeCompare([]byte(jkt), []byte(t.JKT)) != 1 {
		return errors.New("dpop proof signed by another key than the token is bound to")
	}
	return nil
}

// clientCert is the verified client certificate of a mutual-TLS request.
func clientCert(r *http.Request) *x509.Certificate {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return nil
	}
	return r.TLS.VerifiedChains[0][0]
}

// svidPrincipal maps an X.509-SVID of the agent CA's trust domain to the
// configured agent its path names.
func (a *TokenAuthenticator) svidPrincipal(cert *x509.Certificate) (*identity.Principal, error) {
	id, err := identity.SVIDOf(cert)
	if err != nil {
		return nil, err
	}
	// The TLS handshake checked the chain against every trusted authority;
	// an SVID must chain to the authorities of its own trust domain.
	pool := a.trust[id.TrustDomain().Name()]
	if pool == nil {
		return nil, fmt.Errorf("svid %s: untrusted trust domain", id)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return nil, fmt.Errorf("svid %s: not issued by its trust domain: %v", id, err)
	}
	var name string
	if a.ca != nil && id.MemberOf(a.ca.TrustDomain()) {
		n, _, ok := identity.AgentOf(id)
		if !ok {
			return nil, fmt.Errorf("svid %s: not an agent ID", id)
		}
		name = n
	} else if name = a.foreign[id.String()]; name == "" {
		return nil, fmt.Errorf("svid %s: not mapped to an agent", id)
	}
	ag, ok := a.agents[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownAgent, name)
	}
	if a.revs != nil && a.revs.revoked(name, id.String(), "") {
		return nil, errors.New("svid revoked")
	}
	return &identity.Principal{Agent: ag.Name, Roles: ag.Roles, SPIFFEID: id.String(), CredentialID: id.String(), Method: "svid", Expires: cert.NotAfter}, nil
}

// tokenType reads the "typ" of a compact JWS header without trusting it
// (verification decides); it only routes.
func tokenType(raw string) string {
	head, _, _ := strings.Cut(raw, ".")
	if len(head) > 2048 {
		return ""
	}
	b, err := base64.RawURLEncoding.DecodeString(head)
	if err != nil {
		return ""
	}
	var h struct {
		Typ string `json:"typ"`
	}
	json.Unmarshal(b, &h)
	return h.Typ
}

func (a *TokenAuthenticator) taskPrincipal(r *http.Request, raw string) (*identity.Principal, error) {
	if a.tasks == nil {
		return nil, errors.New("task tokens are not accepted")
	}
	t, err := a.verifyTask(raw)
	if err != nil {
		return nil, err
	}
	if err := a.proveHolder(r, t, raw); err != nil {
		return nil, err
	}
	ag, ok := a.agents[t.Agent]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownAgent, t.Agent)
	}
	if a.revs != nil && a.revs.revoked(t.Agent, t.TokenID, t.ID) {
		return nil, errors.New("credential revoked")
	}
	return &identity.Principal{
		Agent: ag.Name, Roles: ag.Roles, User: t.User, Task: t.ID, TaskTools: t.Tools, TaskBudget: t.Budget, TaskPurpose: t.Purpose,
		Actors: t.Actors, CredentialID: t.TokenID, Method: "task+dpop", Expires: t.Expires,
	}, nil
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
	if a.revs != nil && a.revs.revoked(c.Agent, c.ID, "") {
		return nil, errors.New("credential revoked")
	}
	return &identity.Principal{
		Agent: ag.Name, Roles: ag.Roles, CredentialID: c.ID, Method: "token", Expires: c.Expires,
	}, nil
}

func (a *TokenAuthenticator) verify(raw string) (token.Claims, error) {
	return cachedVerify(a, a.cache, raw, a.v.Verify, func(c token.Claims) time.Time { return c.Expires })
}

// verifyTask checks a task token, caching the result per token (by hash)
// until it expires; the proof of possession is still checked per request.
func (a *TokenAuthenticator) verifyTask(raw string) (token.Task, error) {
	return cachedVerify(a, a.taskCache, raw, a.tasks.VerifyTask, func(t token.Task) time.Time { return t.Expires })
}

// cachedVerify returns raw's verified claims, verifying them on first sight
// and then serving them from cache (keyed by the token's hash) until they
// expire. A full cache sheds expired entries first, then arbitrary ones.
func cachedVerify[T any](a *TokenAuthenticator, cache map[[32]byte]T, raw string, verify func(string) (T, error), expires func(T) time.Time) (T, error) {
	var zero T
	if len(raw) > token.MaxTokenBytes {
		return zero, token.ErrMalformed
	}
	key := sha256.Sum256([]byte(raw))
	now := a.now()
	a.mu.Lock()
	c, ok := cache[key]
	a.mu.Unlock()
	if ok {
		if now.After(expires(c).Add(token.Leeway)) {
			return zero, token.ErrExpired
		}
		return c, nil
	}
	c, err := verify(raw)
	if err != nil {
		return zero, err
	}
	a.mu.Lock()
	if len(cache) >= maxCachedTokens {
		for k, v := range cache {
			if now.After(expires(v).Add(token.Leeway)) || len(cache) >= maxCachedTokens {
				delete(cache, k)
			}
		}
	}
	cache[key] = c
	a.mu.Unlock()
	return c, nil
}
