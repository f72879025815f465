// Package wire reads and edits MCP's JSON-RPC 2.0 messages as bytes.
//
// The gateway decides on a parsed view of each message and forwards the
// original bytes, with only the edits it must make (a renamed tool, a
// gateway request ID, a trace parent). Parse validates a whole message once,
// strictly: well-formed JSON (RFC 8259), valid UTF-8, no unpaired surrogate
// escapes, no duplicate object keys at any depth, bounded nesting. What the
// gateway reads is therefore what every conforming peer reads: a message two
// parsers could disagree on (duplicate keys, case variants matched by a
// lenient decoder, invalid UTF-8 replaced by one and kept by another) is
// refused rather than interpreted.
//
// Values are addressed by Span, byte offsets into the message, so that
// lookups and edits never copy or re-encode what they do not touch. Lookup
// and the other readers assume input that Parse (or Valid) accepted.
//
// Concurrency: a Message is immutable once parsed and may be shared between
// goroutines; edits produce new byte slices.
package wire
