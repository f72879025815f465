package identity

import (
	"context"
	"errors"
	"fmt"

	"github.com/coreos/go-oidc/v3/oidc"
)

// Users verifies OIDC ID tokens from one issuer (signature against the
// issuer's JWKS, issuer, audience = the client ID, expiry) and returns the
// user they name.
type Users struct {
	verifier *oidc.IDTokenVerifier
	claim    string
}

// NewUsers discovers the issuer (its /.well-known/openid-configuration and
// JWKS) and returns a verifier for ID tokens issued to clientID.
func NewUsers(ctx context.Context, issuer, clientID, claim string) (*Users, error) {
	p, err := oidc.NewProvider(ctx, issuer)
	if err != nil {
		return nil, fmt.Errorf("oidc issuer %s: %w", issuer, err)
	}
	if claim == "" {
		claim = "email"
	}
	return &Users{verifier: p.Verifier(&oidc.Config{ClientID: clientID}), claim: claim}, nil
}

// User verifies an ID token and returns the user it names.
func (u *Users) User(ctx context.Context, idToken string) (string, error) {
	t, err := u.verifier.Verify(ctx, idToken)
	if err != nil {
		return "", fmt.Errorf("id token: %w", err)
	}
	var claims map[string]any
	if err := t.Claims(&claims); err != nil {
		return "", fmt.Errorf("id token: %w", err)
	}
	if u.claim == "email" {
		if v, ok := claims["email_verified"].(bool); ok && !v {
			return "", errors.New("id token: email not verified")
		}
	}
	user, _ := claims[u.claim].(string)
	if user == "" {
		return "", fmt.Errorf("id token: no %q claim", u.claim)
	}
	return user, nil
}
