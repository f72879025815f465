package telemetry

import (
	"encoding/hex"
	"strings"
)

// ParseTraceparent returns the trace ID of a W3C traceparent header
// (version 00: "00-<trace-id>-<parent-id>-<flags>", lower-case hex, IDs
// not all zero).
func ParseTraceparent(s string) (string, bool) {
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
