package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"regexp"
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
	// Findings are the screening detections in the arguments the decision
	// saw ("category" and "category:rule").
	Findings []string `json:"findings,omitempty"`
}

// Redaction limits: a string longer than this, or under a key that looks
// like a secret, is stored as "sha256:<hex>".
const redactAbove = 256

var sensitiveKey = regexp.MustCompile(`(?i)(pass|secret|token|key|auth|cookie|credential|session|ssn|card|iban|cvv|pin$)`)

// RedactArguments returns the arguments with sensitive or long string values
// replaced by their SHA-256, and how many it replaced. Input that is not a
// JSON object is replaced whole.
func RedactArguments(raw json.RawMessage) (json.RawMessage, int) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil, 0
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return json.RawMessage(`"` + hashOf(raw) + `"`), 1
	}
	n := 0
	v = redact(v, false, &n)
	out, err := json.Marshal(v)
	if err != nil {
		return json.RawMessage(`"` + hashOf(raw) + `"`), 1
	}
	return out, n
}

func redact(v any, sensitive bool, n *int) any {
	switch x := v.(type) {
	case string:
		if sensitive || len(x) > redactAbove {
			*n++
			return hashOf([]byte(x))
		}
		return x
	case map[string]any:
		for k, e := range x {
			x[k] = redact(e, sensitive || sensitiveKey.MatchString(k), n)
		}
		return x
	case []any:
		for i, e := range x {
			x[i] = redact(e, sensitive, n)
		}
		return x
	}
	return v
}

func hashOf(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}
