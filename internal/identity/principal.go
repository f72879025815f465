package identity

import "time"

// Principal is an authenticated agent acting in a request.
type Principal struct {
	// Agent is the agent's configured name.
	Agent string
	// SPIFFEID is the agent's SPIFFE ID, when it authenticated with an SVID.
	SPIFFEID string
	// Roles are the agent's configured roles.
	Roles []string
	// User is the human the agent acts for, when known.
	User string
	// Task is the task the agent works on, when its credential is task-scoped.
	Task string
	// TaskTools are the qualified tool names the task may use (task-scoped
	// credentials only); nothing else is visible or callable.
	TaskTools []string
	// TaskBudget is how many calls the task may make.
	TaskBudget int
	// TaskPurpose is the task's stated purpose, as its starter wrote it
	// (typically the user's request): argument provenance treats the
	// destinations it names as trusted.
	TaskPurpose string
	// Actors is the delegation path behind a delegated task token, nearest
	// first (RFC 8693 act): who handed this agent the task, and so on back
	// to the agent the task was started for.
	Actors []string
	// CredentialID identifies the credential (a token's jti); never the secret.
	CredentialID string
	// Method names how the principal authenticated ("token").
	Method string
	// Expires is when the credential stops being valid.
	Expires time.Time
}
