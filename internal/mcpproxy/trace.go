package mcpproxy

import (
	"crypto/rand"
	"encoding/hex"

	"github.com/portcullis-dev/portcullis/internal/telemetry"
	"github.com/portcullis-dev/portcullis/internal/wire"
)

// W3C trace context: a request carries "traceparent" in its MCP _meta or,
// over HTTP, as a header. The gateway records the trace ID with every event
// of the request and passes a traceparent to the upstream with the gateway
// as the parent, so that one trace ID pulls the whole chain
// (`portcullis audit trace`). A request without one gets a fresh trace ID.

// traceOf returns the request's trace ID (32 hex digits) from its
// _meta.traceparent or the HTTP traceparent header, generating one if
// neither carries a valid one.
func traceOf(m *wire.Message, header string) string {
	if sp := m.Meta("traceparent"); !sp.Empty() {
		if s, ok := wire.String(m.Raw, sp); ok {
			if id, ok := telemetry.ParseTraceparent(s); ok {
				return id
			}
		}
	}
	if id, ok := telemetry.ParseTraceparent(header); ok {
		return id
	}
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
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
