package mcpproxy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
)

// Errors from CheckMessage. Each is a refusal reason recorded in the audit log.
var (
	ErrTooLarge      = errors.New("message too large")
	ErrTooDeep       = errors.New("message nested too deeply")
	ErrBatchTooBig   = errors.New("batch too large")
	ErrMalformed     = errors.New("malformed JSON-RPC message")
	ErrUnknownMethod = errors.New("method not allowed")
)

// Envelope is the routing part of one JSON-RPC message.
type Envelope struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id,omitempty"`
	Method  string          `json:"method,omitempty"`
}

// IsResponse reports whether the message is a response (no method).
func (e Envelope) IsResponse() bool { return e.Method == "" }

// agentMethods are the methods an agent may send through the gateway. Every
// other method is refused before it reaches the MCP library.
var agentMethods = map[string]bool{
	"initialize":                       true,
	"ping":                             true,
	"notifications/initialized":        true,
	"notifications/cancelled":          true,
	"notifications/progress":           true,
	"notifications/roots/list_changed": true,
	"tools/list":                       true,
	"tools/call":                       true,
	"prompts/list":                     true,
	"prompts/get":                      true,
	"resources/list":                   true,
	"resources/templates/list":         true,
	"resources/read":                   true,
	"resources/subscribe":              true,
	"resources/unsubscribe":            true,
	"completion/complete":              true,
	"logging/setLevel":                 true,
	"server/discover":                  true,
	"subscriptions/listen":             true,
}

// KnownAgentMethod reports whether the gateway accepts method from agents.
func KnownAgentMethod(method string) bool { return agentMethods[method] }

// MessageLimits are the bounds CheckMessage enforces.
type MessageLimits struct {
	MaxBytes int64
	MaxDepth int
	MaxBatch int
}

// CheckMessage validates the framing of one JSON-RPC message or batch from an
// agent: size, nesting depth, batch size, envelope shape and method. It
// returns the envelopes on success. It never panics, whatever the input.
func CheckMessage(b []byte, lim MessageLimits) ([]Envelope, error) {
	if int64(len(b)) > lim.MaxBytes {
		return nil, ErrTooLarge
	}
	if err := checkDepth(b, lim.MaxDepth); err != nil {
		return nil, err
	}
	b = bytes.TrimSpace(b)
	var envs []Envelope
	if len(b) > 0 && b[0] == '[' {
		var raws []json.RawMessage
		if err := json.Unmarshal(b, &raws); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		if len(raws) == 0 || len(raws) > lim.MaxBatch {
			return nil, ErrBatchTooBig
		}
		for _, r := range raws {
			e, err := parseEnvelope(r)
			if err != nil {
				return nil, err
			}
			envs = append(envs, e)
		}
		return envs, nil
	}
	e, err := parseEnvelope(b)
	if err != nil {
		return nil, err
	}
	return []Envelope{e}, nil
}

func parseEnvelope(b []byte) (Envelope, error) {
	var e Envelope
	if err := json.Unmarshal(b, &e); err != nil {
		return e, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if e.JSONRPC != "2.0" {
		return e, fmt.Errorf("%w: jsonrpc must be \"2.0\"", ErrMalformed)
	}
	if e.Method == "" {
		if len(e.ID) == 0 {
			return e, fmt.Errorf("%w: neither method nor id", ErrMalformed)
		}
		return e, nil // a response to a server-initiated request
	}
	if !agentMethods[e.Method] {
		return e, fmt.Errorf("%w: %q", ErrUnknownMethod, truncate(e.Method, 100))
	}
	return e, nil
}

// checkDepth scans b once and fails if arrays/objects nest deeper than max.
// It tracks strings so that brackets inside them do not count.
func checkDepth(b []byte, max int) error {
	depth := 0
	inString, escaped := false, false
	for _, c := range b {
		if inString {
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case '{', '[':
			depth++
			if depth > max {
				return ErrTooDeep
			}
		case '}', ']':
			depth--
		}
	}
	return nil
}

// refusal maps a CheckMessage error to the reason code recorded and shown,
// and the JSON-RPC error code of the answer.
func refusal(cause error) (reason string, code int64) {
	switch {
	case errors.Is(cause, ErrTooLarge):
		return "message_too_large", jsonrpc.CodeInvalidRequest
	case errors.Is(cause, ErrTooDeep):
		return "message_too_deep", jsonrpc.CodeInvalidRequest
	case errors.Is(cause, ErrBatchTooBig):
		return "batch_too_large", jsonrpc.CodeInvalidRequest
	case errors.Is(cause, ErrUnknownMethod):
		return ReasonMethodNotAllowed, jsonrpc.CodeMethodNotFound
	case errors.Is(cause, ErrMalformed):
		return "malformed", jsonrpc.CodeParseError
	}
	return "malformed", jsonrpc.CodeInvalidRequest
}

// refusalBody is the JSON-RPC error answering a refused message.
func refusalBody(id json.RawMessage, code int64, reason, requestID string) map[string]any {
	var rid any
	if len(id) > 0 && len(id) < 100 {
		rid = id
	}
	data, _ := json.Marshal(map[string]string{"reason": reason, "request_id": requestID})
	return map[string]any{
		"jsonrpc": "2.0", "id": rid,
		"error": map[string]any{"code": code, "message": "refused by portcullis: " + reason, "data": json.RawMessage(data)},
	}
}
