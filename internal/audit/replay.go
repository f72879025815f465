package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"

	"github.com/portcullis-dev/portcullis/internal/wire"
)

// Input is what a decision event keeps so that the decision can be
// re-evaluated later (`portcullis audit replay`): the principal's roles, the
// target's kind and hints, and the arguments with sensitive values replaced
// by their hashes.
type Input struct {
	Roles      []string        `json:"roles,omitempty"`
	Kind       string          `json:"kind"`
	ReadOnly   bool            `json:"read_only_hint,omitempty"`
	Destruct   bool            `json:"destructive_hint,omitempty"`
	OpenWorld  bool            `json:"open_world_hint,omitempty"`
	Classes    []string        `json:"classification,omitempty"`
	Arguments  json.RawMessage `json:"arguments,omitempty"`
	Redactions int             `json:"redactions,omitempty"`
	// UntrustedArguments name the arguments whose values first appeared in
	// untrusted tool output.
	UntrustedArguments []string `json:"untrusted_arguments,omitempty"`
	// Provenance is where the arguments of each role came from
	// ("recipient": "untrusted", ...), as policy saw it (context.roles).
	Provenance map[string]string `json:"provenance,omitempty"`
	// Findings are the screening detections in the arguments the decision
	// saw ("category" and "category:rule").
	Findings []string `json:"findings,omitempty"`
}

// Redaction limits: a string longer than this, or under a key that looks
// like a secret, is stored as "sha256:<hex>".
const redactAbove = 256

// sensitiveKeyParts: a key holding one of these (any case) marks its
// values sensitive, and a key ending in "pin".
var sensitiveKeyParts = []string{"pass", "secret", "token", "key", "auth", "cookie", "credential", "session", "ssn", "card", "iban", "cvv"}

func sensitiveKey(k string) bool {
	k = strings.ToLower(k)
	if strings.HasSuffix(k, "pin") {
		return true
	}
	for _, p := range sensitiveKeyParts {
		if strings.Contains(k, p) {
			return true
		}
	}
	return false
}

// RedactArguments returns the arguments with sensitive or long string values
// replaced by their SHA-256, and how many it replaced. Input that is not a
// JSON object is replaced whole. The rest of the input is kept as it is
// (the values are edited in place, nothing is re-encoded).
func RedactArguments(raw json.RawMessage) (json.RawMessage, int) {
	b := bytes.TrimSpace(raw)
	if len(b) == 0 {
		return nil, 0
	}
	whole := wire.Span{Start: 0, End: len(b)}
	if wire.Valid(b, 128) != nil || !wire.IsObject(b, whole) {
		return json.RawMessage(`"` + hashOf(raw) + `"`), 1
	}
	var edits []wire.Edit
	var walk func(sp wire.Span, sensitive bool)
	walk = func(sp wire.Span, sensitive bool) {
		switch {
		case wire.IsString(b, sp):
			v, _ := wire.String(b, sp)
			if sensitive || len(v) > redactAbove {
				edits = append(edits, wire.Replace(sp, wire.Quote(hashOf([]byte(v)))))
			}
		case wire.IsObject(b, sp):
			wire.Members(b, sp, func(k, v wire.Span) bool {
				key, _ := wire.String(b, k)
				walk(v, sensitive || sensitiveKey(key))
				return true
			})
		case wire.IsArray(b, sp):
			wire.Elements(b, sp, func(el wire.Span) bool {
				walk(el, sensitive)
				return true
			})
		}
	}
	walk(whole, false)
	if len(edits) == 0 {
		return json.RawMessage(b), 0
	}
	return json.RawMessage(wire.Apply(b, edits...)), len(edits)
}

func hashOf(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}
