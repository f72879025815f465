package reason

// What happened, in events that are not refusals. The event's type says
// which part of the gateway it concerns (docs/audit-events.md).
const (
	// The gateway and its upstreams (gateway_lifecycle, upstream).
	Started Code = "started"
	Stopped Code = "stopped"
	// A session took the user's signed request as trusted provenance
	// (session_label).
	IntentAccepted Code = "intent_accepted"
	// A gateway took up a session that began on another gateway (or
	// before a restart), with the labels it had (session_label).
	SessionTakenUp Code = "session_taken_up"
	// An agent session was opened (decision, action open_session).
	SessionOpened   Code = "session_opened"
	Restarting      Code = "restarting"
	OfferingRefused Code = "offering_refused" // a colliding or invalid tool, prompt or resource

	// The gateway's authorizations towards upstreams (upstream_auth).
	UpstreamAuthorizationRequested Code = "upstream_authorization_requested"
	UpstreamAuthorized             Code = "upstream_authorized"
	UpstreamAuthorizationFailed    Code = "upstream_authorization_failed"

	// Detection and response (alert, response): the alert's class, the
	// step taken.
	AlertUnexpectedTool        Code = "unexpected_tool"
	AlertDenialBurst           Code = "denial_burst"
	AlertRate                  Code = "rate"
	AlertOffHours              Code = "off_hours"
	AlertCredentialAccess      Code = "credential_access"
	AlertLateralMovement       Code = "lateral_movement"
	AlertAnomaly               Code = "anomaly"
	AlertDrift                 Code = "drift"
	AlertEgressViolation       Code = "egress_violation"
	BaselineRestored           Code = "baseline_restored"
	ResponseFlag               Code = "flag"
	ResponseReadOnly           Code = "read_only"
	ResponseTerminate          Code = "terminate_session"
	ResponseRevokeAgent        Code = "revoke_agent"
	ResponseRevokeTask         Code = "revoke_task"
	ResponseQuarantineUpstream Code = "quarantine_upstream"
	ResponseApproval           Code = "require_approval"
	ResponseAwaiting           Code = "awaiting_approval"
	ResponseNotTaken           Code = "not_taken"
	ResponseReleased           Code = "released"
	// Triage verdicts (triage) and alert states (alert_state).
	VerdictBenign     Code = "benign"
	VerdictSuspicious Code = "suspicious"
	VerdictMalicious  Code = "malicious"
	AlertAcknowledged Code = "acknowledged"
	AlertResolved     Code = "resolved"

	// Agent memory (memory).
	MemoryWritten     Code = "memory_written"
	MemoryDeleted     Code = "memory_deleted"
	MemoryTampered    Code = "memory_tampered"
	MemoryReleased    Code = "memory_released"
	MemoryQuarantined Code = "memory_quarantined"
	MemoryPurged      Code = "memory_purged"
	MemoryExpired     Code = "memory_expired"
	MemoryRolledBack  Code = "memory_rolled_back"
	// AlertMemoryTampered: a memory version failed verification (alert).
	AlertMemoryTampered Code = "memory_tampered_alert"

	// Credentials (token_issued).
	TaskStarted      Code = "task_started"
	RevocationLifted Code = "revocation_lifted"
	IntentIssued     Code = "intent_issued"
	TokenExchange    Code = "token_exchange"
	AgentRevoked     Code = "agent_revoked"
	TaskRevoked      Code = "task_revoked"
	TokenRevoked     Code = "token_revoked"

	// Identity (identity).
	JoinTokenCreated Code = "join_token_created"
	SVIDIssued       Code = "svid_issued"
	SVIDRotated      Code = "svid_rotated"
	SecretSet        Code = "secret_set"
	// The built-in authorization server (identity).
	ClientRegistered       Code = "client_registered"
	AuthorizationConsented Code = "authorization_consented"
	SignInRefused          Code = "sign_in_refused"
	// The web console (identity): a one-time sign-in link issued, a person
	// signed in or out.
	ConsoleLinkIssued Code = "console_link_issued"
	ConsoleSignedIn   Code = "console_signed_in"
	ConsoleSignedOut  Code = "console_signed_out"

	// Privileges and reviews (privilege_change, approval; a denial by a
	// reviewer is ApprovalDenied).
	GrantCreated     Code = "grant_created"
	GrantRevoked     Code = "grant_revoked"
	GrantExpired     Code = "grant_expired"
	ApprovalApproved Code = "approval_approved"

	// A sandboxed server's connections through the egress proxy (egress).
	EgressAllowed Code = "egress_allowed"
	EgressRefused Code = "egress_refused"
	EgressFailed  Code = "egress_failed"
	EgressClosed  Code = "egress_closed"
	// Beyond a launch's event rate, the rest counted in one event; and a
	// launch's way out closed for malformed requests.
	EgressSuppressed Code = "egress_suppressed"
	EgressCut        Code = "egress_cut"

	// Tool supply chain (tool_pin).
	ToolPinned      Code = "tool_pinned"
	ToolQuarantined Code = "tool_quarantined"
	ToolApproved    Code = "tool_approved"
	ToolRejected    Code = "tool_rejected"
	ToolUnpinnable  Code = "tool_unpinnable"
	ManifestInvalid Code = "manifest_invalid"

	// Policy (policy_change) and retention.
	BundleLoaded   Code = "bundle_loaded"
	BundleRejected Code = "bundle_rejected"
	// An operator rolled back to a kept bundle, or released the rollback;
	// the gateway started on the last good bundle, its files rejected.
	BundleRolledBack       Code = "bundle_rolled_back"
	BundleRollbackReleased Code = "bundle_rollback_released"
	BundleLastGood         Code = "bundle_last_good"
	BodiesPruned           Code = "bodies_pruned"

	// Screening and data-flow labels (screening, session_label): the most
	// severe action taken.
	Blocked  Code = "blocked"
	Withheld Code = "withheld"
	Redacted Code = "redacted"
	Labelled Code = "labelled"
	Flagged  Code = "flagged"
)
