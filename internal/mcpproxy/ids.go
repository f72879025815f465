package mcpproxy

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	"encoding/hex"
	"time"
)

// Request and trace IDs the gateway makes are time-ordered: a 48-bit
// millisecond timestamp, then random bits (72 for a request ID, 80 for a
// trace ID), encoded so that byte order is time order (like UUIDv7).
// Every audit event is indexed by both (`portcullis audit query --request`,
// `audit trace`); an ID that sorts after the last one is inserted at the
// right edge of its index, where a random one lands on a random page:
// filling the events table costs about a quarter as much (a benchmark of
// the table in docs/performance.md). The random part keeps IDs
// unguessable and unique; the timestamp says no more than the event's
// own time. A trace ID taken from the caller's traceparent is kept as
// it is.

// reqIDEncoding is base32 with the "extended hex" alphabet (RFC 4648 §7),
// whose byte order is the order of the values encoded.
var reqIDEncoding = base32.HexEncoding.WithPadding(base32.NoPadding)

// newRequestID returns a request ID: 24 characters of base32hex of 48
// bits of time and 72 random bits.
func newRequestID() string { return requestIDAt(time.Now()) }

func requestIDAt(t time.Time) string {
	var b [15]byte
	timeOrdered(b[:], t)
	return reqIDEncoding.EncodeToString(b[:])
}

// newTraceID returns a W3C trace ID (32 lowercase hex digits): 48 bits of
// time and 80 random bits (Trace Context Level 2 asks for the rightmost
// 7 bytes to be random).
func newTraceID() string { return traceIDAt(time.Now()) }

func traceIDAt(t time.Time) string {
	var b [16]byte
	timeOrdered(b[:], t)
	return hex.EncodeToString(b[:])
}

// timeOrdered fills b with t's Unix milliseconds (big-endian, 6 bytes)
// followed by random bytes.
func timeOrdered(b []byte, t time.Time) {
	var ms [8]byte
	binary.BigEndian.PutUint64(ms[:], uint64(t.UnixMilli()))
	copy(b, ms[2:])
	rand.Read(b[6:])
}
