package mcpproxy

import (
	"crypto/rand"
	"encoding/hex"

	"github.com/portcullis-dev/portcullis/internal/policy"
	"github.com/portcullis-dev/portcullis/internal/telemetry"
	"github.com/portcullis-dev/portcullis/internal/wire"
)

// W3C trace context: a request carries "traceparent" in its MCP _meta or,
// over HTTP, as a header. The gateway records the trace ID with every event
// of the request and passes a traceparent to the upstream with the gateway
// as the parent, so that one trace ID pulls the whole chain
// (`portcullis audit trace`). A request without one gets a fresh trace ID.

// traceOf returns the request's trace context from its _meta.traceparent
// or the HTTP traceparent header: the trace ID (32 hex digits) and the
// caller's span, the parent of the gateway's. Neither carrying a valid one,
// it is a fresh trace ID with no parent.
func traceOf(m *wire.Message, header string) telemetry.TraceContext {
	if sp := m.Meta("traceparent"); !sp.Empty() {
		if s, ok := wire.String(m.Raw, sp); ok {
			if tc, ok := telemetry.ParseTraceContext(s); ok {
				return tc
			}
		}
	}
	if tc, ok := telemetry.ParseTraceContext(header); ok {
		return tc
	}
	return telemetry.TraceContext{TraceID: newTraceID()}
}

// childTraceparent is the traceparent the gateway sends downstream: the
// upstream call's span is the parent (a fresh ID when not tracing).
func childTraceparent(traceID, spanID string) string {
	if spanID == "" {
		var b [8]byte
		rand.Read(b[:])
		spanID = hex.EncodeToString(b[:])
	}
	return "00-" + traceID + "-" + spanID + "-01"
}

// setDecision records a policy decision on its span: portcullis.decision
// is allow or deny, portcullis.reason the code of a denial (or of a hold
// for approval), portcullis.policy_version the bundle that decided.
func setDecision(span *telemetry.Span, d policy.Decision) {
	out := "deny"
	if d.Allow {
		out = "allow"
	}
	span.Set("portcullis.decision", out)
	if d.Code != "" {
		span.Set("portcullis.reason", string(d.Code))
	}
	span.Set("portcullis.policy_version", d.Version)
}
