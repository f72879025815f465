package transport

import "time"

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
	// client).
	ID      string
	URL     string
	Expires time.Time
}

func (e *AuthorizationRequired) Error() string {
	if e.PerUser {
		return "upstream " + e.Upstream + " needs the user's authorization"
	}
	return "upstream " + e.Upstream + " needs an operator's authorization"
}
