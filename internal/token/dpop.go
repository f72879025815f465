package token

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// DPoP (RFC 9449): a task token carries cnf.jkt, the thumbprint of a key
// its holder keeps; every request must come with a fresh proof signed by
// that key, naming the request's method and URL and the token's hash. A
// stolen token without the key is useless, and a proof cannot be replayed.

// DPoP limits.
const (
	DPoPTyp       = "dpop+jwt"
	DPoPMaxAge    = 60 * time.Second // proofs older (or newer) than this are refused
	MaxProofBytes = 8 << 10
	maxSeenJTIs   = 100_000
)

// ErrDPoP is returned for a missing or invalid proof.
var ErrDPoP = errors.New("dpop proof invalid")

// DPoPVerifier checks proofs and remembers their jti for replay protection.
type DPoPVerifier struct {
	now  func() time.Time
	mu   sync.Mutex
	seen map[string]time.Time // jti -> expiry of the memory
}

// NewDPoPVerifier returns a verifier; now may be nil.
func NewDPoPVerifier(now func() time.Time) *DPoPVerifier {
	if now == nil {
		now = time.Now
	}
	return &DPoPVerifier{now: now, seen: map[string]time.Time{}}
}

type dpopClaims struct {
	JTI string           `json:"jti"`
	HTM string           `json:"htm"`
	HTU string           `json:"htu"`
	IAT *jwt.NumericDate `json:"iat"`
	ATH string           `json:"ath,omitempty"` // none in a proof for a token request
}

// Verify checks proof for a request (method, url without query) carrying
// accessToken, and returns the thumbprint of the proof's key.
func (d *DPoPVerifier) Verify(proof, method, url, accessToken string) (string, error) {
	if proof == "" || len(proof) > MaxProofBytes || strings.Count(proof, ".") != 2 {
		return "", fmt.Errorf("%w: missing or malformed", ErrDPoP)
	}
	tok, err := jwt.ParseSigned(proof, DPoPAlgorithms)
	if err != nil || len(tok.Headers) != 1 {
		return "", fmt.Errorf("%w: unparseable", ErrDPoP)
	}
	h := tok.Headers[0]
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); typ != DPoPTyp {
		return "", fmt.Errorf("%w: typ", ErrDPoP)
	}
	if h.JSONWebKey == nil || !h.JSONWebKey.IsPublic() {
		return "", fmt.Errorf("%w: no public jwk", ErrDPoP)
	}
	var c dpopClaims
	if err := tok.Claims(h.JSONWebKey.Key, &c); err != nil {
		return "", fmt.Errorf("%w: signature", ErrDPoP)
	}
	now := d.now()
	switch {
	case c.JTI == "" || len(c.JTI) > 256 || c.IAT == nil:
		return "", fmt.Errorf("%w: jti and iat required", ErrDPoP)
	case !strings.EqualFold(c.HTM, method) || c.HTU != url:
		return "", fmt.Errorf("%w: proof is for another request", ErrDPoP)
	case now.Sub(c.IAT.Time()) > DPoPMaxAge || c.IAT.Time().Sub(now) > DPoPMaxAge:
		return "", fmt.Errorf("%w: stale", ErrDPoP)
	case accessToken == "" && c.ATH != "", accessToken != "" && c.ATH != ATH(accessToken):
		return "", fmt.Errorf("%w: proof is for another token", ErrDPoP)
	}
	tp, err := h.JSONWebKey.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("%w: key", ErrDPoP)
	}
	if !d.remember(c.JTI, now) {
		return "", fmt.Errorf("%w: replayed", ErrDPoP)
	}
	return b64(tp), nil
}

// remember records jti; false if it was seen within its validity.
func (d *DPoPVerifier) remember(jti string, now time.Time) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if exp, ok := d.seen[jti]; ok && now.Before(exp) {
		return false
	}
	if len(d.seen) >= maxSeenJTIs {
		for k, exp := range d.seen {
			if !now.Before(exp) {
				delete(d.seen, k)
			}
		}
		if len(d.seen) >= maxSeenJTIs {
			// Full of live proofs: refuse rather than forget (fail closed).
			return false
		}
	}
	d.seen[jti] = now.Add(2 * DPoPMaxAge)
	return true
}

// ATH is the access-token hash a proof carries.
func ATH(accessToken string) string {
	s := sha256.Sum256([]byte(accessToken))
	return base64.RawURLEncoding.EncodeToString(s[:])
}

// DPoPAlgorithms are the signature algorithms a DPoP proof may use (named
// in challenges and in the protected resource's metadata).
var DPoPAlgorithms = []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA}

// Thumbprint returns the RFC 7638 thumbprint (base64url) of a public key.
func Thumbprint(pub crypto.PublicKey) (string, error) {
	tp, err := (&jose.JSONWebKey{Key: pub}).Thumbprint(crypto.SHA256)
	if err != nil {
		return "", err
	}
	return b64(tp), nil
}

// Proof makes a DPoP proof (for clients and tests).
func Proof(key crypto.Signer, alg jose.SignatureAlgorithm, method, url, accessToken, jti string, at time.Time) (string, error) {
	opts := (&jose.SignerOptions{EmbedJWK: true}).WithType(DPoPTyp)
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		return "", err
	}
	c := dpopClaims{JTI: jti, HTM: method, HTU: url, IAT: jwt.NewNumericDate(at)}
	if accessToken != "" {
		c.ATH = ATH(accessToken)
	}
	return jwt.Signed(s).Claims(c).Serialize()
}

// DPoPTransport is an HTTP client transport for a DPoP-bound access token
// (a task token): every request carries the token and a fresh ES256 proof
// of possession of Key for its method and URL. For clients and replays.
type DPoPTransport struct {
	Token string
	Key   *ecdsa.PrivateKey
	n     atomic.Int64
}

// RoundTrip implements http.RoundTripper.
func (d *DPoPTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	jti := fmt.Sprint("jti-", d.n.Add(1), "-", time.Now().UnixNano())
	proof, err := Proof(d.Key, jose.ES256, r.Method, r.URL.Scheme+"://"+r.URL.Host+r.URL.Path, d.Token, jti, time.Now())
	if err != nil {
		return nil, err
	}
	r.Header.Set("Authorization", "DPoP "+d.Token)
	r.Header.Set("DPoP", proof)
	return http.DefaultTransport.RoundTrip(r)
}

// BearerTransport is an HTTP client transport for a bearer token (an
// agent token): every request carries it. For the gateway's own clients
// (triage, simulation).
type BearerTransport struct{ Token string }

// RoundTrip implements http.RoundTripper.
func (b BearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.Token)
	return http.DefaultTransport.RoundTrip(r)
}
