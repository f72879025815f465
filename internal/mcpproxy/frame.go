package mcpproxy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/portcullis-dev/portcullis/internal/reason"
	"github.com/portcullis-dev/portcullis/internal/wire"
)

// Errors from CheckMessage. Each is a refusal reason recorded in the audit log.
var (
	ErrTooLarge      = errors.New("message too large")
	ErrTooDeep       = errors.New("message nested too deeply")
	ErrBatchTooBig   = errors.New("batch too large")
	ErrMalformed     = errors.New("malformed JSON-RPC message")
	ErrUnknownMethod = errors.New("method not allowed")
)

// agentMethods are the requests and notifications an agent may send
// through the gateway. Every other method is refused before a pipeline
// sees it; responses (to the requests servers send agents) are routed by
// id.
var agentMethods = map[string]bool{
	"initialize":                       true,
	"ping":                             true,
	"notifications/initialized":        true,
	"notifications/cancelled":          true,
	"notifications/progress":           true,
	"notifications/roots/list_changed": true,
	"notifications/tasks/status":       true,
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
	"tasks/get":                        true,
	"tasks/result":                     true,
	"tasks/list":                       true,
	"tasks/cancel":                     true,
}

// KnownAgentMethod reports whether the gateway accepts method from agents.
func KnownAgentMethod(method string) bool { return agentMethods[method] }

// MessageLimits are the bounds CheckMessage enforces.
type MessageLimits struct {
	MaxBytes int64
	MaxDepth int
	MaxBatch int
}

// CheckMessage parses what an agent sent (one message or a batch) and
// checks it: size, nesting depth, batch size, strict JSON-RPC (see package
// wire) and the method against the agent allow list. It never panics,
// whatever the input.
func CheckMessage(b []byte, lim MessageLimits) ([]*wire.Message, error) {
	if int64(len(b)) > lim.MaxBytes {
		return nil, ErrTooLarge
	}
	i := 0
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	if i < len(b) && b[i] == '[' {
		return checkBatch(b, lim)
	}
	m, err := wire.Parse(b, lim.MaxDepth)
	if err != nil {
		return nil, frameError(err)
	}
	if err := checkMethod(m); err != nil {
		return nil, err
	}
	return []*wire.Message{m}, nil
}

func checkBatch(b []byte, lim MessageLimits) ([]*wire.Message, error) {
	if err := wire.Valid(b, lim.MaxDepth); err != nil {
		return nil, frameError(err)
	}
	start := bytes.IndexByte(b, '[')
	end := bytes.LastIndexByte(b, ']') + 1
	var out []*wire.Message
	var ferr error
	wire.Elements(b, wire.Span{Start: start, End: end}, func(el wire.Span) bool {
		if len(out) >= lim.MaxBatch {
			ferr = ErrBatchTooBig
			return false
		}
		m, err := wire.Parse(el.In(b), lim.MaxDepth)
		if err == nil {
			err = checkMethod(m)
		}
		if err != nil {
			ferr = frameError(err)
			return false
		}
		out = append(out, m)
		return true
	})
	if ferr != nil {
		return nil, ferr
	}
	if len(out) == 0 {
		return nil, ErrBatchTooBig
	}
	return out, nil
}

func checkMethod(m *wire.Message) error {
	if (m.Kind == wire.Request || m.Kind == wire.Notification) && !agentMethods[m.Method] {
		return fmt.Errorf("%w: %q", ErrUnknownMethod, truncate(m.Method, 100))
	}
	return nil
}

func frameError(err error) error {
	switch {
	case errors.Is(err, wire.ErrDepth):
		return ErrTooDeep
	case errors.Is(err, ErrUnknownMethod), errors.Is(err, ErrTooLarge), errors.Is(err, ErrBatchTooBig), errors.Is(err, ErrTooDeep):
		return err
	}
	return fmt.Errorf("%w: %v", ErrMalformed, err)
}

// frameRefusal maps a CheckMessage error to the reason code recorded and
// shown, and the JSON-RPC error code of the answer.
func frameRefusal(cause error) (why reason.Code, code int64) {
	switch {
	case errors.Is(cause, ErrTooLarge):
		return reason.MessageTooLarge, wire.CodeInvalidRequest
	case errors.Is(cause, ErrTooDeep):
		return reason.MessageTooDeep, wire.CodeInvalidRequest
	case errors.Is(cause, ErrBatchTooBig):
		return reason.BatchTooLarge, wire.CodeInvalidRequest
	case errors.Is(cause, ErrUnknownMethod):
		return reason.MethodNotAllowed, wire.CodeMethodNotFound
	case errors.Is(cause, ErrMalformed):
		return reason.Malformed, wire.CodeParseError
	}
	return reason.Malformed, wire.CodeInvalidRequest
}

// frameAnswer is the JSON-RPC error answering a refused message, echoing
// its id when one could be read.
func frameAnswer(id []byte, code int64, why reason.Code, requestID string) []byte {
	if len(id) == 0 || len(id) > 100 {
		id = nil
	}
	data := []byte(`{"reason":`)
	data = wire.AppendString(data, string(why))
	data = append(data, `,"request_id":`...)
	data = wire.AppendString(data, requestID)
	data = append(data, '}')
	return wire.NewError(id, code, "refused by portcullis: "+string(why), data)
}

// peekIDMethod reads the id and method of a message that failed the checks
// (for the answer and the audit record), when its top level is readable
// JSON with exactly one "id" (anything ambiguous gets no id: the answer
// must not go to a request the sender did not make).
func peekIDMethod(b []byte) (id []byte, method string) {
	if len(b) == 0 || len(b) > 1<<20 {
		return nil, ""
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, ""
	}
	ids := 0
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, truncate(method, 100)
		}
		key, _ := t.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, truncate(method, 100)
		}
		switch key {
		case "id":
			ids++
			if len(v) > 0 && (v[0] == '"' || v[0] == '-' || v[0] >= '0' && v[0] <= '9') && utf8.Valid(v) {
				id = v
			}
		case "method":
			json.Unmarshal(v, &method)
		}
	}
	if ids != 1 {
		id = nil
	}
	return id, truncate(method, 100)
}

// unanswered reports whether b, which failed the checks, gets no answer:
// it reads as a notification (a JSON object with a method and no id
// member at all) or as an answer (a result or an error member and no
// method). Every other message is answered, with its id when peekIDMethod
// reads one and null otherwise (JSON-RPC 2.0: the id of a request whose
// id cannot be read is null), so that no request goes unanswered.
func unanswered(b []byte) bool {
	var v map[string]json.RawMessage
	if len(b) > 1<<20 || json.Unmarshal(b, &v) != nil {
		return false
	}
	_, hasID := v["id"]
	_, hasMethod := v["method"]
	_, hasResult := v["result"]
	_, hasError := v["error"]
	return hasMethod && !hasID || !hasMethod && (hasResult || hasError)
}
