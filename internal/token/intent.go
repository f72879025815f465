package token

import (
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"
)

// TypIntent is the JOSE "typ" of intent tokens.
const TypIntent = "portcullis-intent+jwt"

// MaxIntentBytes bounds the request an intent token carries.
const MaxIntentBytes = 4096

// Intent is a signed statement of what a user asked an agent for, passed
// by the orchestrator beside the agent's own credential (the
// Portcullis-Intent header) so that values the user named count as
// trusted provenance in a session without a task. The model never writes
// it: it is not part of a tool call, and it is signed by the gateway's key.
type Intent struct {
	Agent string // the agent it is for
	User  string // who asked (optional)
	Text  string // what they asked for
	// Filled in by Issue / Verify:
	TokenID string
	Expires time.Time
}

type intentClaims struct {
	jwt.Claims
	User   string `json:"usr,omitempty"`
	Intent string `json:"intent"`
}

// IssueIntent mints an intent token.
func (i *Issuer) IssueIntent(in Intent, ttl time.Duration) (string, Intent, error) {
	switch {
	case i.typ != TypIntent:
		return "", Intent{}, errors.New("issue intent: not an intent issuer")
	case in.Agent == "" || in.Text == "":
		return "", Intent{}, errors.New("issue intent: an agent and the user's request are required")
	case len(in.Text) > MaxIntentBytes:
		return "", Intent{}, fmt.Errorf("issue intent: the request is over %d bytes", MaxIntentBytes)
	case ttl <= 0 || ttl > i.maxTTL:
		return "", Intent{}, fmt.Errorf("issue intent: ttl %s outside (0, %s]", ttl, i.maxTTL)
	}
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return "", Intent{}, err
	}
	now := i.now().Truncate(time.Second)
	in.TokenID, in.Expires = b64(id[:]), now.Add(ttl)
	c := intentClaims{
		Claims: jwt.Claims{ID: in.TokenID, Subject: in.Agent, Issuer: i.issuer, Audience: jwt.Audience{i.audience},
			IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(in.Expires)},
		User: in.User, Intent: in.Text,
	}
	raw, err := jwt.Signed(i.signer).Claims(c).Serialize()
	if err != nil {
		return "", Intent{}, err
	}
	return raw, in, nil
}

// VerifyIntent checks an intent token's signature and claims.
func (v *Verifier) VerifyIntent(raw string) (Intent, error) {
	if v.typ != TypIntent {
		return Intent{}, errors.New("verify intent: not an intent verifier")
	}
	var c intentClaims
	if err := v.verifySigned(raw, TypIntent, &c); err != nil {
		return Intent{}, err
	}
	if c.Expiry == nil || c.IssuedAt == nil || c.ID == "" || c.Subject == "" || c.Intent == "" || len(c.Intent) > MaxIntentBytes {
		return Intent{}, fmt.Errorf("%w: exp, iat, jti, sub and intent are required", ErrClaims)
	}
	if err := v.checkTimes(c.Claims); err != nil {
		return Intent{}, err
	}
	return Intent{Agent: c.Subject, User: c.User, Text: c.Intent, TokenID: c.ID, Expires: c.Expiry.Time()}, nil
}
