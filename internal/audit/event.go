package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/portcullis-dev/portcullis/internal/store"
)

// Event types. docs/audit-events.md documents each one and its fields.
const (
	TypeDecision     = "decision"          // a policy decision on an agent request (allow or deny)
	TypeAuthn        = "authn"             // an authentication failure at the gateway
	TypeProtocol     = "protocol"          // a message refused before policy (limits, unknown method, malformed)
	TypeUpstream     = "upstream"          // an upstream started, stopped, crashed or changed its lists
	TypeServer       = "server_request"    // a request from an upstream towards an agent (sampling, ...)
	TypeToken        = "token_issued"      // an agent token was minted
	TypeLifecyle     = "gateway_lifecycle" // the gateway started or stopped, with its policy version
	TypeRetention    = "retention"         // old event bodies were pruned
	TypePolicy       = "policy_change"     // a policy bundle was loaded or rejected
	TypePrivilege    = "privilege_change"  // a just-in-time grant was created, revoked or expired
	TypeApproval     = "approval"          // a reviewer approved or denied a held call
	TypeSupplyChain  = "tool_pin"          // a tool definition was pinned, quarantined, approved or rejected
	TypeIdentity     = "identity"          // an agent SVID or join token was issued, rotated or refused
	TypeSessionLabel = "session_label"     // a session acquired data-flow labels from what it read
	TypeScreening    = "screening"         // content screening acted on a message (redacted, ...)
)

// Outcomes.
const (
	OutcomeAllow = "allow"
	OutcomeDeny  = "deny"
	OutcomeError = "error"
	OutcomeInfo  = "info"
)

// Event is one audit record. Fields irrelevant to a type are left empty and
// omitted from the encoding.
type Event struct {
	Seq  int64     `json:"seq,omitempty"`
	Time time.Time `json:"time"`
	Type string    `json:"type"`
	// Outcome is deny unless the action was allowed (see NewEvent).
	Outcome string `json:"outcome"`

	Agent string `json:"agent,omitempty"`
	User  string `json:"user,omitempty"`
	Task  string `json:"task,omitempty"`
	// Actors is the delegation path of a delegated credential, nearest first.
	Actors     []string `json:"act_chain,omitempty"`
	Credential string   `json:"credential_id,omitempty"`
	SessionID  string   `json:"session_id,omitempty"`
	RequestID  string   `json:"request_id,omitempty"`
	// TraceID is the W3C trace ID the request carried, if any.
	TraceID    string `json:"trace_id,omitempty"`
	RemoteAddr string `json:"remote_addr,omitempty"`

	Method   string `json:"method,omitempty"`
	Action   string `json:"action,omitempty"`
	Target   string `json:"target,omitempty"`
	Upstream string `json:"upstream,omitempty"`

	Code          string   `json:"code,omitempty"`
	Policies      []string `json:"policies,omitempty"`
	Reasons       []string `json:"reasons,omitempty"`
	Errors        []string `json:"errors,omitempty"`
	PolicyVersion string   `json:"policy_version,omitempty"`
	// ArgumentsSHA256 identifies the exact arguments without storing them.
	ArgumentsSHA256 string `json:"arguments_sha256,omitempty"`
	// LatencyMicros is the gateway's decision time (for decisions) or the
	// upstream round trip (for upstream outcomes).
	LatencyMicros int64  `json:"latency_us,omitempty"`
	Detail        string `json:"detail,omitempty"`
	// Labels are the session's data-flow labels when it was decided (for a
	// decision), or the labels it just acquired (for session_label).
	Labels []string `json:"labels,omitempty"`
	// Input keeps what a policy decision needs for replay.
	Input *Input `json:"input,omitempty"`
}

// NewEvent returns an event of type t whose outcome is deny until the caller
// sets otherwise.
func NewEvent(t string, now time.Time) *Event {
	return &Event{Type: t, Time: now.UTC(), Outcome: OutcomeDeny}
}

// Decode parses a stored event. A pruned event (no body) decodes to its
// indexed columns only, with Detail "pruned".
func Decode(r store.EventRow) (*Event, error) {
	var e Event
	if r.Body == nil {
		return &Event{Seq: r.Seq, Time: r.Time, Type: r.Type, RequestID: r.RequestID, TraceID: r.TraceID,
			Agent: r.Agent, SessionID: r.SessionID, Detail: "pruned"}, nil
	}
	if err := json.Unmarshal(r.Body, &e); err != nil {
		return nil, fmt.Errorf("decode event %d: %w", r.Seq, err)
	}
	e.Seq = r.Seq
	return &e, nil
}

// WriteNow appends one event directly, for processes that do not run a
// Recorder (the CLI). The token or change it records is not released unless
// this succeeds.
func WriteNow(ctx context.Context, s LogStore, e *Event) error {
	return Append(ctx, s, []*Event{e})
}
