package authn

import (
	"context"
	"crypto"
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

// maxCachedTokens bounds the verified-token cache.
const maxCachedTokens = 4096

// Authenticator authenticates agents by the gateway's signed tokens and by
// SVIDs. Signature checks are cached per token (keyed by its hash) until
// the token expires, so the per-request cost is a hash and a map lookup;
// the agent's configuration is consulted on every request.
type Authenticator struct {
	publicURL string // "" when requests name the listener itself
	v         *token.Verifier
	tasks     *token.Verifier
	dpop      *token.DPoPVerifier
	revs      *Revocations // nil: revocation not checked (tests of the authenticator alone)
	trust     *Trust       // nil: SVIDs not accepted
	// agents are the configured agents by name.
	agents map[string]config.Agent
	now    func() time.Time
	// ext verifies tokens of the configured external issuers (nil: none);
	// issuer is this gateway's own, never taken for an external one.
	ext    *external
	issuer string

	mu        sync.Mutex
	cache     map[[32]byte]token.Claims
	taskCache map[[32]byte]token.Task
}

// Options are what an Authenticator trusts.
type Options struct {
	Key    *token.SigningKey // signs agent and task tokens
	Auth   config.Auth       // issuer, audience, maximum lifetime
	Agents []config.Agent
	// Trust says which SVIDs are accepted (nil: none).
	Trust *Trust
	// Revocations is the view of what is revoked (nil: not checked; only
	// for tests of the authenticator alone).
	Revocations *Revocations
	Now         func() time.Time
	// ExternalSecrets are the introspection client secrets of external
	// issuers, by issuer URL (resolved by the caller).
	ExternalSecrets map[string]string
	// PublicURL is the gateway's origin as agents reach it (behind a TLS
	// proxy, say): DPoP proofs name it (htu) rather than the listener.
	PublicURL string
	// LocalKeys are the signing keys of issuers in process (the built-in
	// authorization server), by issuer URL: their tokens verify with these
	// keys, nothing is fetched.
	LocalKeys map[string]crypto.PublicKey
}

// requestURL is r's URL without query as its client named it (DPoP htu):
// on the public URL when one is configured.
func (a *Authenticator) requestURL(r *http.Request) string {
	if a.publicURL != "" {
		return a.publicURL + r.URL.Path
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + r.URL.Path
}

// ProveKey checks the DPoP proof of a request that carries no access
// token bound to it (a token request, RFC 9449 §5) and returns its key's
// thumbprint: the key a token issued in answer may be bound to.
func (a *Authenticator) ProveKey(r *http.Request) (string, error) {
	return a.dpop.Verify(r.Header.Get("DPoP"), r.Method, a.requestURL(r), "")
}

// New returns an authenticator for the configured agents.
func New(o Options) *Authenticator {
	m := map[string]config.Agent{}
	for _, a := range o.Agents {
		m[a.Name] = a
	}
	now := o.Now
	if now == nil {
		now = time.Now
	}
	maxTTL := o.Auth.MaxTTL.D()
	var ext *external
	if len(o.Auth.External) > 0 {
		ext = newExternal(o.Auth.External, o.Auth.Scopes, o.ExternalSecrets, m, now)
		ext.local(o.LocalKeys)
	}
	return &Authenticator{
		publicURL: strings.TrimRight(o.PublicURL, "/"),
		ext:       ext,
		v:         token.NewVerifier(o.Key, o.Auth.Issuer, o.Auth.Audience, maxTTL, nil),
		tasks:     token.NewTypedVerifier(o.Key, token.TypTask, o.Auth.Issuer, o.Auth.Audience, maxTTL, nil),
		dpop:      token.NewDPoPVerifier(nil),
		revs:      o.Revocations,
		trust:     o.Trust,
		agents:    m, now: now, issuer: o.Auth.Issuer,
		cache: map[[32]byte]token.Claims{}, taskCache: map[[32]byte]token.Task{},
	}
}

// Authenticate implements mcpproxy.Authenticator. Agent tokens come as
// "Bearer"; task tokens, which are sender-constrained, as "DPoP" with a
// proof of possession in the DPoP header (RFC 9449).
func (a *Authenticator) Authenticate(r *http.Request) (*identity.Principal, error) {
	h := r.Header.Get("Authorization")
	scheme, raw, ok := strings.Cut(h, " ")
	raw = strings.TrimSpace(raw)
	switch {
	case h == "" && ClientCert(r) != nil:
		return a.SVIDPrincipal(ClientCert(r))
	case !ok || raw == "":
		return nil, errors.New("no credential")
	case strings.EqualFold(scheme, "DPoP"):
		return a.taskPrincipal(r, raw)
	case strings.EqualFold(scheme, "Bearer"):
		p, err := a.Principal(raw)
		switch {
		case err == nil:
			return p, nil
		case tokenType(raw) == token.TypTask:
			// RFC 8705: a certificate-bound task token comes as Bearer on
			// a mutual-TLS connection with the bound certificate.
			return a.taskPrincipal(r, raw)
		case a.IsExternal(raw):
			return a.External(r.Context(), raw)
		case a.ext != nil && len(a.ext.introspecting) > 0 && strings.Count(raw, ".") != 2:
			return a.Introspected(r.Context(), raw)
		}
		return p, err
	}
	return nil, errors.New("unsupported authorization scheme")
}

// ProveHolder checks that the request comes from the holder of the key a
// task token is bound to: the mutual-TLS client certificate (x5t#S256) or a
// DPoP proof for this request (jkt).
func (a *Authenticator) ProveHolder(r *http.Request, t token.Task, raw string) error {
	if t.X5T != "" {
		c := ClientCert(r)
		if c == nil || subtle.ConstantTimeCompare([]byte(identity.CertThumbprint(c)), []byte(t.X5T)) != 1 {
			return errors.New("task token bound to another client certificate")
		}
		// The certificate must still be good as an SVID: current (not
		// rotated away) and its instance not revoked.
		if id, err := identity.SVIDOf(c); err == nil && a.revs != nil {
			own := a.trust != nil && id.MemberOf(a.trust.ca.TrustDomain())
			if a.revs.Revoked(t.Agent, id.String(), "") || (own && a.revs.Superseded(id.String(), c.SerialNumber.Text(16))) {
				return errors.New("the client certificate the task token is bound to was rotated or revoked")
			}
		}
		return nil
	}
	jkt, err := a.dpop.Verify(r.Header.Get("DPoP"), r.Method, a.requestURL(r), raw)
	if err != nil {
		return err
	}
	if subtle.ConstantTimeCompare([]byte(jkt), []byte(t.JKT)) != 1 {
		return errors.New("dpop proof signed by another key than the token is bound to")
	}
	return nil
}

// ClientCert is the verified client certificate of a mutual-TLS request.
func ClientCert(r *http.Request) *x509.Certificate {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return nil
	}
	return r.TLS.VerifiedChains[0][0]
}

// SVIDPrincipal maps an X.509-SVID of the agent CA's trust domain to the
// configured agent its path names.
func (a *Authenticator) SVIDPrincipal(cert *x509.Certificate) (*identity.Principal, error) {
	id, err := identity.SVIDOf(cert)
	if err != nil {
		return nil, err
	}
	// The TLS handshake checked the chain against every trusted authority;
	// an SVID must chain to the authorities of its own trust domain.
	if a.trust == nil {
		return nil, fmt.Errorf("svid %s: SVIDs are not accepted", id)
	}
	pool := a.trust.pools[id.TrustDomain().Name()]
	if pool == nil {
		return nil, fmt.Errorf("svid %s: untrusted trust domain", id)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return nil, fmt.Errorf("svid %s: not issued by its trust domain: %v", id, err)
	}
	var name string
	if id.MemberOf(a.trust.ca.TrustDomain()) {
		n, _, ok := identity.AgentOf(id)
		if !ok {
			return nil, fmt.Errorf("svid %s: not an agent ID", id)
		}
		name = n
	} else if name = a.trust.foreign[id.String()]; name == "" {
		return nil, fmt.Errorf("svid %s: not mapped to an agent", id)
	}
	ag, ok := a.agents[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q", config.ErrUnknownAgent, name)
	}
	if a.revs != nil && a.revs.Revoked(name, id.String(), "") {
		return nil, errors.New("svid revoked")
	}
	// A rotation retires the certificate before it: only the instance's
	// current SVID authenticates. (Federated SVIDs are their domain's to
	// rotate.)
	if a.revs != nil && id.MemberOf(a.trust.ca.TrustDomain()) && a.revs.Superseded(id.String(), cert.SerialNumber.Text(16)) {
		return nil, fmt.Errorf("svid %s: superseded by a rotation, or not an enrolled instance", id)
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

func (a *Authenticator) taskPrincipal(r *http.Request, raw string) (*identity.Principal, error) {
	if a.tasks == nil {
		return nil, errors.New("task tokens are not accepted")
	}
	t, err := a.VerifyTask(raw)
	if err != nil {
		return nil, err
	}
	if err := a.ProveHolder(r, t, raw); err != nil {
		return nil, err
	}
	ag, ok := a.agents[t.Agent]
	if !ok {
		return nil, fmt.Errorf("%w: %q", config.ErrUnknownAgent, t.Agent)
	}
	if a.revs != nil && (a.revs.Revoked(t.Agent, t.TokenID, t.ID) || t.Parent != "" && a.revs.Revoked(t.Agent, t.Parent, "")) {
		return nil, errors.New("credential revoked")
	}
	return &identity.Principal{
		Agent: ag.Name, Roles: ag.Roles, User: t.User, Task: t.ID, TaskTools: t.Tools, TaskBudget: t.Budget, TaskPurpose: t.Purpose,
		Actors: t.Actors, CredentialID: t.TokenID, Method: "task+dpop", Expires: t.Expires,
	}, nil
}

// IsExternal reports whether raw claims to come from an issuer other than
// this gateway while external issuers are configured (it is not verified).
func (a *Authenticator) IsExternal(raw string) bool {
	iss := issuerOf(raw)
	return a.ext != nil && iss != "" && iss != a.issuer
}

// External verifies a token from a configured external issuer and checks
// the mapped agent and credential against revocations.
func (a *Authenticator) External(ctx context.Context, raw string) (*identity.Principal, error) {
	if !a.IsExternal(raw) {
		return nil, ErrUnknownIssuer
	}
	return a.unlessRevoked(a.ext.principal(ctx, raw))
}

// unlessRevoked passes on a verified external principal unless its agent
// or credential is revoked.
func (a *Authenticator) unlessRevoked(p *identity.Principal, err error) (*identity.Principal, error) {
	if err != nil {
		return nil, err
	}
	if a.revs != nil && a.revs.Revoked(p.Agent, p.CredentialID, "") {
		return nil, errors.New("credential revoked")
	}
	return p, nil
}

// Introspected asks the configured issuers about an opaque token (RFC
// 7662) and checks the mapped agent and credential against revocations.
func (a *Authenticator) Introspected(ctx context.Context, raw string) (*identity.Principal, error) {
	if a.ext == nil || len(raw) > token.MaxTokenBytes {
		return nil, ErrUnknownIssuer
	}
	return a.unlessRevoked(a.ext.introspect(ctx, raw))
}

// Principal verifies a raw token and returns its principal.
func (a *Authenticator) Principal(raw string) (*identity.Principal, error) {
	c, err := a.verify(raw)
	if err != nil {
		return nil, err
	}
	ag, ok := a.agents[c.Agent]
	if !ok {
		return nil, fmt.Errorf("%w: %q", config.ErrUnknownAgent, c.Agent)
	}
	if a.revs != nil && a.revs.Revoked(c.Agent, c.ID, "") {
		return nil, errors.New("credential revoked")
	}
	return &identity.Principal{
		Agent: ag.Name, Roles: ag.Roles, CredentialID: c.ID, Method: "token", Expires: c.Expires,
	}, nil
}

func (a *Authenticator) verify(raw string) (token.Claims, error) {
	return cachedVerify(a, a.cache, raw, a.v.Verify, func(c token.Claims) time.Time { return c.Expires })
}

// VerifyTask checks a task token, caching the result per token (by hash)
// until it expires; the proof of possession is still checked per request.
func (a *Authenticator) VerifyTask(raw string) (token.Task, error) {
	return cachedVerify(a, a.taskCache, raw, a.tasks.VerifyTask, func(t token.Task) time.Time { return t.Expires })
}

// cachedVerify returns raw's verified claims, verifying them on first sight
// and then serving them from cache (keyed by the token's hash) until they
// expire. A full cache sheds expired entries first, then arbitrary ones.
func cachedVerify[T any](a *Authenticator, cache map[[32]byte]T, raw string, verify func(string) (T, error), expires func(T) time.Time) (T, error) {
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
