package token

import (
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// TypAssertion is the JOSE "typ" of the gateway's per-request assertions
// towards HTTP upstreams.
const TypAssertion = "portcullis-assertion+jwt"

// AssertionTTL is how long an assertion is valid: one request.
const AssertionTTL = time.Minute

// Assertion tells an upstream who is behind a request the gateway relays:
// the agent, the user it acts for, the task, the delegation chain, the
// session and the request. Signed with the gateway's token key (its JWKS
// is public), audience the upstream's URL: an upstream decides on who is
// behind the gateway without ever seeing the agent's credential.
type Assertion struct {
	Issuer    string           `json:"iss"`
	Audience  jwt.Audience     `json:"aud"`
	Agent     string           `json:"sub"`
	User      string           `json:"user,omitempty"`
	Task      string           `json:"task,omitempty"`
	Actors    []string         `json:"act_chain,omitempty"`
	Session   string           `json:"sid,omitempty"`
	RequestID string           `json:"request_id,omitempty"`
	ID        string           `json:"jti"`
	IssuedAt  *jwt.NumericDate `json:"iat"`
	Expires   *jwt.NumericDate `json:"exp"`
}

// Assert signs an assertion (Issuer, Audience, Agent... set by the caller;
// ID and times by Assert).
func (k *SigningKey) Assert(a Assertion, now time.Time) (string, error) {
	if a.Agent == "" || len(a.Audience) == 0 {
		return "", errors.New("assertion: agent and audience required")
	}
	var id [12]byte
	if _, err := rand.Read(id[:]); err != nil {
		return "", err
	}
	a.ID = b64(id[:])
	a.IssuedAt, a.Expires = jwt.NewNumericDate(now), jwt.NewNumericDate(now.Add(AssertionTTL))
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: k.priv},
		(&jose.SignerOptions{}).WithType(jose.ContentType(TypAssertion)).WithHeader("kid", k.kid))
	if err != nil {
		return "", err
	}
	return jwt.Signed(s).Claims(a).Serialize()
}

// VerifyAssertion checks an assertion against the gateway's JWKS, for an
// upstream whose URL is audience (what an upstream does; the tests).
func VerifyAssertion(raw string, keys jose.JSONWebKeySet, issuer, audience string, now time.Time) (*Assertion, error) {
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.EdDSA})
	if err != nil {
		return nil, fmt.Errorf("assertion: %w", err)
	}
	if len(tok.Headers) != 1 || tok.Headers[0].ExtraHeaders["typ"] != TypAssertion {
		return nil, errors.New("assertion: not a portcullis assertion")
	}
	ks := keys.Key(tok.Headers[0].KeyID)
	if len(ks) != 1 {
		return nil, errors.New("assertion: unknown key")
	}
	var a Assertion
	var std jwt.Claims
	if err := tok.Claims(ks[0].Key, &a, &std); err != nil {
		return nil, fmt.Errorf("assertion: %w", err)
	}
	if err := std.ValidateWithLeeway(jwt.Expected{Issuer: issuer, AnyAudience: jwt.Audience{audience}, Time: now}, 0); err != nil {
		return nil, fmt.Errorf("assertion: %w", err)
	}
	return &a, nil
}
