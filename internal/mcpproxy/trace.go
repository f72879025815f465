package mcpproxy

import (
	"crypto/rand"
	"encoding/hex"
	"strings"

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
			if id, ok := parseTraceparent(s); ok {
				return id
			}
		}
	}
	if id, ok := parseTraceparent(header); ok {
		return id
	}
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ParseTraceparent returns the trace ID of a W3C traceparent.
func ParseTraceparent(s string) (string, bool) { return parseTraceparent(s) }

// parseTraceparent accepts version 00 "00-<trace-id>-<parent-id>-<flags>".
func parseTraceparent(s string) (string, bool) {
	parts := strings.Split(s, "-")
	if len(parts) != 4 || parts[0] != "00" || len(parts[1]) != 32 || len(parts[2]) != 16 || len(parts[3]) != 2 {
		return "", false
	}
	for _, p := range parts[1:] {
		if _, err := hex.DecodeString(p); err != nil || strings.ToLower(p) != p {
			return "", false
		}
	}
	if parts[1] == strings.Repeat("0", 32) || parts[2] == strings.Repeat("0", 16) {
		return "", false
	}
	return parts[1], true
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
