package transport

import (
	"context"
	"errors"
	"time"
)

// ErrAuthorization wraps every failure of the gateway's authorization
// towards an upstream (OAuth): it concerns the grant (one user's, or the
// operator's), not whether the upstream is up.
var ErrAuthorization = errors.New("upstream authorization")

type promptKey struct{}

// WithPrompt says that the request may start an authorization that asks
// a person (a call: the person is told where to go). Without it (opening
// a session, listing) an authorization that needs the user fails at once
// and asks nobody.
func WithPrompt(ctx context.Context) context.Context {
	return context.WithValue(ctx, promptKey{}, true)
}

// Prompting reports whether ctx may start an authorization that asks a
// person.
func Prompting(ctx context.Context) bool {
	p, _ := ctx.Value(promptKey{}).(bool)
	return p
}

// AuthorizationRequired is an upstream that refuses the gateway until a
// person authorizes it (OAuth authorization code): the request failed, and
// the authorization waits at URL until Expires.
type AuthorizationRequired struct {
	Upstream string
	// User is the person whose authorization is needed ("" for the
	// operator's, which serves every user).
	User    string
	PerUser bool
	// ID names the authorization flow (an elicitation ID for the agent's
	// client); ID and URL are empty when no flow was started (a user's
	// authorization is asked for by a call, not by a listing).
	ID      string
	URL     string
	Expires time.Time
}

// Is makes an AuthorizationRequired an ErrAuthorization.
func (e *AuthorizationRequired) Is(target error) bool { return target == ErrAuthorization }

func (e *AuthorizationRequired) Error() string {
	if e.PerUser {
		return "upstream " + e.Upstream + " needs the user's authorization"
	}
	return "upstream " + e.Upstream + " needs an operator's authorization"
}

type headerKey struct{}

// WithRequestHeader makes the HTTP request carrying a message sent with
// ctx carry header name: value (the gateway's per-request assertion).
func WithRequestHeader(ctx context.Context, name, value string) context.Context {
	return context.WithValue(ctx, headerKey{}, [2]string{name, value})
}
