package token

import (
	"crypto"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

const cryptoSHA256 = crypto.SHA256

// Token types (JOSE "typ"): a token of one type is never accepted as another.
const (
	TypAgent = "portcullis-agent+jwt"
	TypAdmin = "portcullis-admin+jwt"
)

// MaxTokenBytes bounds the size of a presented token.
const MaxTokenBytes = 8 << 10

// Leeway tolerated on nbf/exp for clock skew between hosts.
const Leeway = 30 * time.Second

// Errors returned by Verify. Callers refuse the request for any of them; the
// distinction is for audit reasons, not for the agent.
var (
	ErrMalformed = errors.New("token malformed")
	ErrSignature = errors.New("token signature invalid")
	ErrExpired   = errors.New("token expired or not yet valid")
	ErrClaims    = errors.New("token claims invalid")
)

// Claims are the verified contents of an agent token.
type Claims struct {
	ID       string
	Agent    string
	Issuer   string
	Audience string
	IssuedAt time.Time
	Expires  time.Time
}

type wireClaims struct {
	jwt.Claims
}

// Issuer mints agent tokens.
type Issuer struct {
	key      *SigningKey
	typ      string
	signer   jose.Signer
	issuer   string
	audience string
	maxTTL   time.Duration
	now      func() time.Time
}

// NewIssuer returns an Issuer signing with key. now may be nil (time.Now).
func NewIssuer(key *SigningKey, issuer, audience string, maxTTL time.Duration, now func() time.Time) (*Issuer, error) {
	return NewTypedIssuer(key, TypAgent, issuer, audience, maxTTL, now)
}

// NewTypedIssuer returns an Issuer of tokens of type typ.
func NewTypedIssuer(key *SigningKey, typ, issuer, audience string, maxTTL time.Duration, now func() time.Time) (*Issuer, error) {
	opts := (&jose.SignerOptions{}).WithType(jose.ContentType(typ)).WithHeader("kid", key.kid)
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: key.priv}, opts)
	if err != nil {
		return nil, fmt.Errorf("new token signer: %w", err)
	}
	if now == nil {
		now = time.Now
	}
	return &Issuer{key: key, typ: typ, signer: s, issuer: issuer, audience: audience, maxTTL: maxTTL, now: now}, nil
}

// Issue mints a token for agent valid for ttl.
func (i *Issuer) Issue(agent string, ttl time.Duration) (string, Claims, error) {
	if agent == "" {
		return "", Claims{}, errors.New("issue token: agent required")
	}
	if ttl <= 0 || ttl > i.maxTTL {
		return "", Claims{}, fmt.Errorf("issue token: ttl %s outside (0, %s]", ttl, i.maxTTL)
	}
	now := i.now().Truncate(time.Second)
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return "", Claims{}, fmt.Errorf("issue token: %w", err)
	}
	c := Claims{ID: b64(id[:]), Agent: agent, Issuer: i.issuer, Audience: i.audience, IssuedAt: now, Expires: now.Add(ttl)}
	wc := wireClaims{jwt.Claims{
		ID: c.ID, Subject: agent, Issuer: i.issuer, Audience: jwt.Audience{i.audience},
		IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(c.Expires),
	}}
	raw, err := jwt.Signed(i.signer).Claims(wc).Serialize()
	if err != nil {
		return "", Claims{}, fmt.Errorf("issue token: %w", err)
	}
	return raw, c, nil
}

// Verifier checks agent tokens.
type Verifier struct {
	key      *SigningKey
	typ      string
	issuer   string
	audience string
	maxTTL   time.Duration
	now      func() time.Time
}

// NewVerifier returns a Verifier for tokens signed by key. now may be nil.
func NewVerifier(key *SigningKey, issuer, audience string, maxTTL time.Duration, now func() time.Time) *Verifier {
	return NewTypedVerifier(key, TypAgent, issuer, audience, maxTTL, now)
}

// NewTypedVerifier returns a Verifier of tokens of type typ.
func NewTypedVerifier(key *SigningKey, typ, issuer, audience string, maxTTL time.Duration, now func() time.Time) *Verifier {
	if now == nil {
		now = time.Now
	}
	return &Verifier{key: key, typ: typ, issuer: issuer, audience: audience, maxTTL: maxTTL, now: now}
}

// Verify parses and checks raw, returning its claims.
func (v *Verifier) Verify(raw string) (Claims, error) {
	var wc wireClaims
	if err := v.verifySigned(raw, v.typ, &wc); err != nil {
		return Claims{}, err
	}
	if wc.Expiry == nil || wc.IssuedAt == nil || wc.ID == "" || wc.Subject == "" {
		return Claims{}, fmt.Errorf("%w: exp, iat, jti and sub are required", ErrClaims)
	}
	if err := v.checkTimes(wc.Claims); err != nil {
		return Claims{}, err
	}
	return Claims{
		ID: wc.ID, Agent: wc.Subject, Issuer: wc.Issuer, Audience: v.audience,
		IssuedAt: wc.IssuedAt.Time(), Expires: wc.Expiry.Time(),
	}, nil
}

// verifySigned parses raw as a compact JWS of JOSE type typ signed with
// v's key, and decodes its claims into out. Every token type is checked
// this way; what its claims must hold is the caller's.
func (v *Verifier) verifySigned(raw, typ string, out any) error {
	if len(raw) > MaxTokenBytes || strings.Count(raw, ".") != 2 {
		return ErrMalformed
	}
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.EdDSA})
	if err != nil || len(tok.Headers) != 1 {
		return ErrMalformed
	}
	h := tok.Headers[0]
	if t, _ := h.ExtraHeaders[jose.HeaderType].(string); t != typ {
		return fmt.Errorf("%w: typ %q", ErrClaims, t)
	}
	if h.KeyID != v.key.kid {
		return ErrSignature
	}
	if err := tok.Claims(v.key.Public(), out); err != nil {
		return ErrSignature
	}
	return nil
}

// checkTimes checks issuer, audience, validity (with Leeway) and that the
// lifetime is within v's maximum.
func (v *Verifier) checkTimes(c jwt.Claims) error {
	err := c.ValidateWithLeeway(jwt.Expected{Issuer: v.issuer, AnyAudience: jwt.Audience{v.audience}, Time: v.now()}, Leeway)
	switch {
	case errors.Is(err, jwt.ErrExpired), errors.Is(err, jwt.ErrNotValidYet), errors.Is(err, jwt.ErrIssuedInTheFuture):
		return ErrExpired
	case err != nil:
		return fmt.Errorf("%w: %v", ErrClaims, err)
	}
	if life := c.Expiry.Time().Sub(c.IssuedAt.Time()); life > v.maxTTL {
		return fmt.Errorf("%w: lifetime %s exceeds %s", ErrClaims, life, v.maxTTL)
	}
	return nil
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
