package wire

import (
	"bytes"
	"errors"
	"fmt"
)

// ErrEnvelope is wrapped by Parse for JSON that is not a JSON-RPC 2.0
// message MCP allows.
var ErrEnvelope = errors.New("not a JSON-RPC 2.0 message")

// Kind is what a message is.
type Kind uint8

// Kinds of message.
const (
	Request      Kind = iota + 1 // method and id
	Notification                 // method, no id
	Response                     // id and result
	ErrorReply                   // id (possibly null) and error
)

func (k Kind) String() string {
	switch k {
	case Request:
		return "request"
	case Notification:
		return "notification"
	case Response:
		return "response"
	case ErrorReply:
		return "error"
	}
	return "unknown"
}

// Message is one JSON-RPC 2.0 message: the exact bytes received and a view
// of the parts the gateway reads. Spans index Raw.
type Message struct {
	Raw    []byte
	Kind   Kind
	Method string
	ID     Span // the id token (a number or a string; null only in an error)
	Params Span // the params object, or empty
	Result Span
	Error  Span

	members []member // of the envelope, params, params._meta, result and result._meta
}

// Parse validates b as one JSON-RPC 2.0 message (not a batch) and returns
// its view. Methods and params must be what MCP sends: a string method and
// an object params.
func Parse(b []byte, maxDepth int) (*Message, error) {
	m := &Message{Raw: b, members: make([]member, 0, 12)}
	s := scanner{b: b, maxDepth: maxDepth}
	top, err := s.document(&m.members)
	if err != nil {
		return nil, err
	}
	if b[top.Start] != '{' {
		return nil, envelopeErr("a message must be a JSON object")
	}
	if err := m.envelope(); err != nil {
		return nil, err
	}
	if m.Kind == Request || m.Kind == Notification {
		// What it carries is acted on by its receiver (see dupLinear).
		if err := s.foldDupErr(); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func envelopeErr(msg string) error { return fmt.Errorf("%w: %s", ErrEnvelope, msg) }

func (m *Message) envelope() error {
	version, hasMethod, nullID := false, false, false
	for _, mb := range m.members {
		if mb.role != roleTop {
			continue
		}
		v := mb.val.In(m.Raw)
		switch mb.key {
		case "jsonrpc":
			if string(v) != `"2.0"` {
				return envelopeErr(`jsonrpc must be "2.0"`)
			}
			version = true
		case "id":
			switch {
			case v[0] == '"' || v[0] == '-' || v[0] >= '0' && v[0] <= '9':
				m.ID = mb.val
			case string(v) == "null":
				nullID = true // only an error reply may carry a null id
			default:
				return envelopeErr("id must be a string or a number")
			}
		case "method":
			if v[0] != '"' {
				return envelopeErr("method must be a string")
			}
			method, ok := internMethod(v)
			if !ok {
				return envelopeErr("method must be a plain string")
			}
			m.Method, hasMethod = method, true
		case "params":
			if v[0] != '{' {
				return envelopeErr("params must be an object")
			}
			m.Params = mb.val
		case "result":
			m.Result = mb.val
		case "error":
			if v[0] != '{' {
				return envelopeErr("error must be an object")
			}
			m.Error = mb.val
		}
	}
	if !version {
		return envelopeErr(`jsonrpc must be "2.0"`)
	}
	hasID := !m.ID.Empty()
	switch {
	case nullID && (hasMethod || !m.Result.Empty()):
		return envelopeErr("id must not be null")
	case hasMethod && m.Method == "":
		return envelopeErr("method must not be empty")
	case hasMethod && (!m.Result.Empty() || !m.Error.Empty()):
		return envelopeErr("a request carries neither result nor error")
	case hasMethod && hasID:
		m.Kind = Request
	case hasMethod:
		m.Kind = Notification
	case !m.Result.Empty() && !m.Error.Empty():
		return envelopeErr("a response carries result or error, not both")
	case !m.Result.Empty() && hasID:
		m.Kind = Response
	case !m.Error.Empty():
		m.Kind = ErrorReply
	default:
		return envelopeErr("neither a method nor a result or error")
	}
	if !m.Params.Empty() && !hasMethod {
		return envelopeErr("params without a method")
	}
	if !m.Error.Empty() {
		// JSON-RPC's error object: what its receiver reads of it.
		code, okCode := Lookup(m.Raw, m.Error, "code")
		msg, okMsg := Lookup(m.Raw, m.Error, "message")
		if !okCode || !isInteger(code.In(m.Raw)) || !okMsg || !IsString(m.Raw, msg) {
			return envelopeErr("error needs an integer code and a string message")
		}
	}
	return nil
}

// isInteger reports whether the JSON number tok has no fraction and no
// exponent.
func isInteger(tok []byte) bool {
	if len(tok) > 0 && tok[0] == '-' {
		tok = tok[1:]
	}
	if len(tok) == 0 {
		return false
	}
	for _, c := range tok {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// IDBytes returns the raw id token, or nil.
func (m *Message) IDBytes() []byte {
	if m.ID.Empty() {
		return nil
	}
	return m.ID.In(m.Raw)
}

// Param returns the span of a params member the gateway reads (see
// knownKey), or an empty span.
func (m *Message) Param(key string) Span { return m.lookup(roleParams, key) }

// Meta returns the span of a params._meta member (or, in a response,
// result._meta) the gateway reads.
func (m *Message) Meta(key string) Span { return m.lookup(roleMeta, key) }

// ResultMember returns the span of a member of the result object.
func (m *Message) ResultMember(key string) Span { return m.lookup(roleResult, key) }

// ParamMeta returns the span of params._meta, or an empty span.
func (m *Message) ParamMeta() Span { return m.Param("_meta") }

func (m *Message) lookup(role objRole, key string) Span {
	for _, mb := range m.members {
		if mb.role == role && mb.key == key && key != "" {
			return mb.val
		}
	}
	return Span{}
}

// ParamString returns a params member that is a string, decoded.
func (m *Message) ParamString(key string) (string, bool) {
	sp := m.Param(key)
	if sp.Empty() {
		return "", false
	}
	return String(m.Raw, sp)
}

// Bytes returns the bytes of sp within the message.
func (m *Message) Bytes(sp Span) []byte { return sp.In(m.Raw) }

// internMethod decodes a method string token, interning MCP's methods so
// that the common case does not allocate. Escapes are decoded; a method
// containing control characters or quotes is refused.
func internMethod(tok []byte) (string, bool) {
	if bytes.IndexByte(tok[1:len(tok)-1], '\\') >= 0 {
		s := unquote(tok)
		for i := 0; i < len(s); i++ {
			if s[i] < 0x20 || s[i] == '"' {
				return "", false
			}
		}
		return s, true
	}
	raw := tok[1 : len(tok)-1]
	if s, ok := methods[string(raw)]; ok {
		return s, true
	}
	return string(raw), true
}

// Methods of the protocol (2024-11-05 to 2026-07-28), for interning.
var methods = func() map[string]string {
	m := map[string]string{}
	for _, s := range []string{
		"initialize", "ping", "notifications/initialized", "notifications/cancelled", "notifications/progress",
		"notifications/roots/list_changed", "notifications/message", "notifications/tools/list_changed",
		"notifications/prompts/list_changed", "notifications/resources/list_changed", "notifications/resources/updated",
		"notifications/elicitation/complete", "notifications/tasks/status",
		"tools/list", "tools/call", "prompts/list", "prompts/get", "resources/list", "resources/templates/list",
		"resources/read", "resources/subscribe", "resources/unsubscribe", "completion/complete", "logging/setLevel",
		"sampling/createMessage", "elicitation/create", "roots/list",
		"tasks/get", "tasks/result", "tasks/list", "tasks/cancel", "server/discover", "subscriptions/listen",
	} {
		m[s] = s
	}
	return m
}()
