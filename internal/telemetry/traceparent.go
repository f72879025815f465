package telemetry

import (
	"context"
	"encoding/hex"
	"strings"
)

// ParseTraceparent returns the trace ID of a W3C traceparent header
// (version 00: "00-<trace-id>-<parent-id>-<flags>", lower-case hex, IDs
// not all zero).
func ParseTraceparent(s string) (string, bool) {
	tc, ok := ParseTraceContext(s)
	return tc.TraceID, ok
}

// TraceContext is what a W3C traceparent carries: the trace and the
// caller's span, the parent of the spans the receiver starts.
type TraceContext struct {
	TraceID  string // 32 hex digits
	ParentID string // 16 hex digits
}

// ParseTraceContext reads a W3C traceparent header (see ParseTraceparent).
func ParseTraceContext(s string) (TraceContext, bool) {
	parts := strings.Split(s, "-")
	if len(parts) != 4 || parts[0] != "00" || len(parts[1]) != 32 || len(parts[2]) != 16 || len(parts[3]) != 2 {
		return TraceContext{}, false
	}
	for _, p := range parts[1:] {
		if _, err := hex.DecodeString(p); err != nil || strings.ToLower(p) != p {
			return TraceContext{}, false
		}
	}
	if parts[1] == strings.Repeat("0", 32) || parts[2] == strings.Repeat("0", 16) {
		return TraceContext{}, false
	}
	return TraceContext{TraceID: parts[1], ParentID: parts[2]}, true
}

// WithRemoteParent makes the caller's span (from its traceparent) the
// parent of the next span started in ctx in the same trace.
func WithRemoteParent(ctx context.Context, tc TraceContext) context.Context {
	if tc.ParentID == "" {
		return ctx
	}
	return context.WithValue(ctx, spanKey{}, &Span{TraceID: tc.TraceID, SpanID: tc.ParentID})
}
