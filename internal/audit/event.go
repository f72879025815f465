package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/portcullis-dev/portcullis/internal/reason"
	"github.com/portcullis-dev/portcullis/internal/store"
)

// Type is what an event concerns. docs/audit-events.md documents each one
// and its fields.
type Type string

// Event types.
const (
	TypeDecision     Type = "decision"          // a policy decision on an agent request (allow or deny)
	TypeAuthn        Type = "authn"             // an authentication failure at the gateway
	TypeProtocol     Type = "protocol"          // a message refused before policy (limits, unknown method, malformed)
	TypeUpstream     Type = "upstream"          // an upstream started, stopped, crashed or changed its lists
	TypeServer       Type = "server_request"    // a request from an upstream towards an agent (sampling, ...)
	TypeToken        Type = "token_issued"      // an agent token was minted
	TypeLifecycle    Type = "gateway_lifecycle" // the gateway started or stopped, with its policy version
	TypeRetention    Type = "retention"         // old event bodies were pruned
	TypePolicy       Type = "policy_change"     // a policy bundle was loaded or rejected
	TypePrivilege    Type = "privilege_change"  // a just-in-time grant was created, revoked or expired
	TypeApproval     Type = "approval"          // a reviewer approved or denied a held call
	TypeSupplyChain  Type = "tool_pin"          // a tool definition was pinned, quarantined, approved or rejected
	TypeIdentity     Type = "identity"          // an agent SVID or join token was issued, rotated or refused
	TypeSessionLabel Type = "session_label"     // a session acquired data-flow labels from what it read
	TypeScreening    Type = "screening"         // content screening acted on a message (redacted, ...)
	TypeUpstreamAuth Type = "upstream_auth"     // the gateway asked for, obtained or failed an upstream's OAuth authorization
	TypeAlert        Type = "alert"             // an agent deviated from its declared baseline
	TypeResponse     Type = "response"          // a response step taken for an alert (containment, revocation)
	TypeTriage       Type = "triage"            // the first-pass triage of an alert: verdict, confidence, recommendation
	TypeAlertState   Type = "alert_state"       // a person acknowledged or resolved an alert
	TypeBaseline     Type = "baseline"          // an operator restored the learned baselines
	TypeMemory       Type = "memory"            // agent memory changed: written, quarantined, released, expired, rolled back, purged; or failed verification
	TypeEgress       Type = "egress"            // a sandboxed server's connection through the egress proxy: allowed, refused, failed, closed
)

// Outcome is how an event ended.
type Outcome string

// Outcomes.
const (
	OutcomeAllow Outcome = "allow"
	OutcomeDeny  Outcome = "deny"
	OutcomeError Outcome = "error"
	OutcomeInfo  Outcome = "info"
)

// Subject is who and what request an event is attributed to.
type Subject struct {
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
}

// Event is one audit record. Fields irrelevant to a type are left empty and
// omitted from the encoding.
type Event struct {
	Seq  int64     `json:"seq,omitempty"`
	Time time.Time `json:"time"`
	Type Type      `json:"type"`
	// Outcome is deny unless the action was allowed (see New).
	Outcome Outcome `json:"outcome"`

	// Subject's fields are encoded in the event's own object.
	Subject

	Method   string `json:"method,omitempty"`
	Action   string `json:"action,omitempty"`
	Target   string `json:"target,omitempty"`
	Upstream string `json:"upstream,omitempty"`

	Code          reason.Code `json:"code,omitempty"`
	Policies      []string    `json:"policies,omitempty"`
	Reasons       []string    `json:"reasons,omitempty"`
	Errors        []string    `json:"errors,omitempty"`
	PolicyVersion string      `json:"policy_version,omitempty"`
	// ArgumentsSHA256 identifies the exact arguments without storing them.
	ArgumentsSHA256 string `json:"arguments_sha256,omitempty"`
	// LatencyMicros is the gateway's decision time (for decisions) or the
	// upstream round trip (for upstream outcomes).
	LatencyMicros int64  `json:"latency_us,omitempty"`
	Detail        string `json:"detail,omitempty"`
	// Labels are the session's data-flow labels when it was decided (for a
	// decision), or the labels it just acquired (for session_label).
	Labels []string `json:"labels,omitempty"`
	// Severity and Techniques qualify an alert: low, medium or high, and
	// the MITRE ATT&CK / ATLAS technique IDs it may indicate.
	Severity   string   `json:"severity,omitempty"`
	Techniques []string `json:"techniques,omitempty"`
	// Alert is the alert an alert, triage, response or alert_state event
	// is about (its ID).
	Alert string `json:"alert_id,omitempty"`
	// Memory are the memory element versions a memory event commits to
	// (their hashes, checked at every read).
	Memory []MemoryRef `json:"memory,omitempty"`
	// Input keeps what a policy decision needs for replay.
	Input *Input `json:"input,omitempty"`
}

// MemoryRef is one version of a memory element and its hash.
type MemoryRef struct {
	ID     int64  `json:"id"`
	Scope  string `json:"scope"`
	Key    string `json:"key"`
	State  string `json:"state"`
	SHA256 string `json:"sha256"`
}

// New returns an event of type t attributed to who, with outcome o and code.
func New(t Type, o Outcome, code reason.Code, now time.Time, who Subject) *Event {
	return &Event{Type: t, Outcome: o, Code: code, Time: now.UTC(), Subject: who}
}

// Decision starts the record of a request that is decided (type decision,
// or server_request for what an upstream asks of an agent): its outcome is
// deny until the decision allows it.
func Decision(t Type, now time.Time, who Subject, method string) *Event {
	e := New(t, OutcomeDeny, "", now, who)
	e.Method = method
	return e
}

// FollowUp is an info event about what happened after the decision d,
// attributed like it (subject, method, action, target, upstream).
func FollowUp(d *Event, t Type, code reason.Code, now time.Time) *Event {
	e := New(t, OutcomeInfo, code, now, d.Subject)
	e.Subject.Actors = slices.Clone(d.Actors)
	e.Method, e.Action, e.Target, e.Upstream = d.Method, d.Action, d.Target, d.Upstream
	return e
}

// Decode parses a stored event. A pruned event (no body) decodes to its
// indexed columns only, with Detail "pruned".
func Decode(r store.EventRow) (*Event, error) {
	var e Event
	if r.Body == nil {
		return &Event{Seq: r.Seq, Time: r.Time, Type: Type(r.Type), Detail: "pruned",
			Subject: Subject{RequestID: r.RequestID, TraceID: r.TraceID, Agent: r.Agent, SessionID: r.SessionID}}, nil
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
