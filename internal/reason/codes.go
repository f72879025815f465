package reason

// Code is a reason code: a stable snake_case word recorded in an audit
// event's code field and, for refusals, shown to the agent.
type Code string

// Refusals an agent can see: the reason in the data of a JSON-RPC error
// (-32030 refused, -32031 allowed but not served) and the code of the
// audit event that recorded it.
const (
	// Authentication and sessions.
	Unauthenticated   Code = "unauthenticated"           // no valid credential
	CredentialExpired Code = "credential_expired"        // the credential expired since the session began
	SessionHijack     Code = "session_agent_mismatch"    // a session ID presented by another agent
	InvalidIntent     Code = "invalid_intent"            // a Portcullis-Intent header that does not verify or is for another agent or user
	InsufficientScope Code = "insufficient_scope"        // an external token without the scopes auth.scopes requires
	SessionBusy       Code = "session_concurrency_limit" // too many calls in flight in the session
	TooManySessions   Code = "session_limit"             // too many sessions in the gateway
	NotInitialized    Code = "session_not_initialized"   // a request before initialize
	AmbiguousSession  Code = "no_unique_agent_session"   // a server request no single agent session owns
	SessionEnded      Code = "session_ended"             // the agent ended the session through another gateway
	SessionNotFound   Code = "session_not_found"         // a session ID no gateway of the fleet holds (HTTP 404)
	BadProtocol       Code = "unsupported_protocol_version"

	// Framing, before any pipeline.
	MessageTooLarge  Code = "message_too_large"
	MessageTooDeep   Code = "message_too_deep"
	BatchTooLarge    Code = "batch_too_large"
	Malformed        Code = "malformed" // includes duplicate keys, invalid UTF-8, unpaired surrogates
	MethodNotAllowed Code = "method_not_allowed"
	HostNotAllowed   Code = "host_not_allowed" // DNS rebinding protection (Host or Origin)

	// Policy.
	NoPermit         Code = "no_permit"           // no policy permits the request (the default)
	Forbidden        Code = "forbidden_by_policy" // a forbid policy applies
	PolicyError      Code = "policy_error"        // a forbid policy could not be evaluated: fails closed
	ApprovalRequired Code = "approval_required"   // held for a reviewer (in the log only; the agent waits)
	ApprovalDenied   Code = "approval_denied"
	ApprovalTimeout  Code = "approval_timeout"

	// What the request names and carries.
	UnknownTarget     Code = "unknown_target"
	BadArguments      Code = "invalid_arguments"
	ArgumentsTooLarge Code = "arguments_too_large"
	ScreeningBlocked  Code = "screening_blocked"
	UnknownTask       Code = "unknown_task"

	// Budgets and task scope.
	RateLimited   Code = "rate_limited"
	BreakerOpen   Code = "breaker_open"
	OutsideTask   Code = "outside_task_scope"
	TaskExhausted Code = "task_budget_exhausted"

	// The response to an alert holds the session back (detection).
	Contained Code = "contained"

	// The gateway itself.
	AuditUnavailable Code = "audit_unavailable"
	Internal         Code = "internal_error"
	StoreUnavailable Code = "store_unavailable" // the store holding the session's state could not be read or written: fails closed

	// Allowed, but the upstream could not serve it (-32031).
	UpstreamUnavailable Code = "upstream_unavailable"
	UpstreamBusy        Code = "upstream_busy"
	UpstreamTimeout     Code = "upstream_timeout"
	UpstreamError       Code = "upstream_error"
	// The upstream needs a person to authorize the gateway (OAuth).
	UpstreamAuthorizationRequired Code = "upstream_authorization_required"
	ResultTooLarge                Code = "result_too_large"
	Cancelled                     Code = "cancelled" // by the agent, before the answer
)

// AgentVisible lists every code above, for documentation checks.
var AgentVisible = []Code{
	Unauthenticated, CredentialExpired, SessionHijack, InvalidIntent, InsufficientScope, SessionBusy, TooManySessions, NotInitialized, AmbiguousSession, SessionEnded,
	SessionNotFound, BadProtocol,
	MessageTooLarge, MessageTooDeep, BatchTooLarge, Malformed, MethodNotAllowed, HostNotAllowed,
	NoPermit, Forbidden, PolicyError, ApprovalRequired, ApprovalDenied, ApprovalTimeout,
	UnknownTarget, BadArguments, ArgumentsTooLarge, ScreeningBlocked, UnknownTask,
	RateLimited, BreakerOpen, OutsideTask, TaskExhausted, Contained,
	AuditUnavailable, Internal, StoreUnavailable,
	UpstreamUnavailable, UpstreamBusy, UpstreamTimeout, UpstreamError, UpstreamAuthorizationRequired, ResultTooLarge, Cancelled,
}
