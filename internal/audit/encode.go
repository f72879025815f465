package audit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"

	"github.com/portcullis-dev/portcullis/internal/wire"
)

// An event's stored body is its JSON encoding, the bytes its Merkle leaf
// hashes. appendJSON writes exactly what encoding/json's Marshal writes for
// an *Event (fields in declaration order, omitempty, HTML-safe escaping,
// RFC 3339 times, compacted raw arguments), without reflection: every
// event the gateway records is encoded on the request's path. The
// differential test and fuzz target in encode_test.go hold it to
// json.Marshal, field by field (a field added to Event and not here fails
// them).

// appendJSON appends e's JSON encoding to b.
func (e *Event) appendJSON(b []byte) ([]byte, error) {
	var err error
	b = append(b, '{')
	if e.Seq != 0 {
		b = append(b, `"seq":`...)
		b = strconv.AppendInt(b, e.Seq, 10)
		b = append(b, ',')
	}
	b = append(b, `"time":"`...)
	if b, err = e.Time.AppendText(b); err != nil {
		return nil, fmt.Errorf("json: error calling MarshalJSON for type time.Time: %w", err)
	}
	b = append(b, `","type":`...)
	b = appendJSONString(b, string(e.Type))
	b = append(b, `,"outcome":`...)
	b = appendJSONString(b, string(e.Outcome))
	b = stringField(b, "agent", e.Agent)
	b = stringField(b, "user", e.User)
	b = stringField(b, "task", e.Task)
	b = stringsField(b, "act_chain", e.Actors)
	b = stringField(b, "credential_id", e.Credential)
	b = stringField(b, "session_id", e.SessionID)
	b = stringField(b, "request_id", e.RequestID)
	b = stringField(b, "trace_id", e.TraceID)
	b = stringField(b, "remote_addr", e.RemoteAddr)
	b = stringField(b, "method", e.Method)
	b = stringField(b, "action", e.Action)
	b = stringField(b, "target", e.Target)
	b = stringField(b, "upstream", e.Upstream)
	b = stringField(b, "code", string(e.Code))
	b = stringsField(b, "policies", e.Policies)
	b = stringsField(b, "reasons", e.Reasons)
	b = stringsField(b, "errors", e.Errors)
	b = stringField(b, "policy_version", e.PolicyVersion)
	b = stringField(b, "arguments_sha256", e.ArgumentsSHA256)
	if e.LatencyMicros != 0 {
		b = append(b, `,"latency_us":`...)
		b = strconv.AppendInt(b, e.LatencyMicros, 10)
	}
	b = stringField(b, "detail", e.Detail)
	b = stringsField(b, "labels", e.Labels)
	b = stringField(b, "severity", e.Severity)
	b = stringsField(b, "techniques", e.Techniques)
	b = stringField(b, "alert_id", e.Alert)
	if len(e.Memory) > 0 {
		b = append(b, `,"memory":[`...)
		for i, m := range e.Memory {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"id":`...)
			b = strconv.AppendInt(b, m.ID, 10)
			b = append(b, `,"scope":`...)
			b = appendJSONString(b, m.Scope)
			b = append(b, `,"key":`...)
			b = appendJSONString(b, m.Key)
			b = append(b, `,"state":`...)
			b = appendJSONString(b, m.State)
			b = append(b, `,"sha256":`...)
			b = appendJSONString(b, m.SHA256)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	if e.Input != nil {
		b = append(b, `,"input":`...)
		if b, err = e.Input.appendJSON(b); err != nil {
			return nil, err
		}
	}
	return append(b, '}'), nil
}

// appendJSON appends in's JSON encoding to b.
func (in *Input) appendJSON(b []byte) ([]byte, error) {
	start := len(b)
	b = append(b, '{')
	b = stringsField(b, "roles", in.Roles)
	b = append(b, `,"kind":`...) // no omitempty
	b = appendJSONString(b, in.Kind)
	b = boolField(b, "read_only_hint", in.ReadOnly)
	b = boolField(b, "destructive_hint", in.Destruct)
	b = boolField(b, "open_world_hint", in.OpenWorld)
	b = stringsField(b, "classification", in.Classes)
	if len(in.Arguments) > 0 {
		b = append(b, `,"arguments":`...)
		var err error
		if b, err = appendCompactJSON(b, in.Arguments); err != nil {
			return nil, fmt.Errorf("json: error calling MarshalJSON for type json.RawMessage: %w", err)
		}
	}
	if in.Redactions != 0 {
		b = append(b, `,"redactions":`...)
		b = strconv.AppendInt(b, int64(in.Redactions), 10)
	}
	b = stringsField(b, "untrusted_arguments", in.UntrustedArguments)
	if len(in.Provenance) > 0 {
		b = append(b, `,"provenance":{`...)
		keys := make([]string, 0, len(in.Provenance))
		for k := range in.Provenance {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, k)
			b = append(b, ':')
			b = appendJSONString(b, in.Provenance[k])
		}
		b = append(b, '}')
	}
	b = stringsField(b, "findings", in.Findings)
	// Every field above wrote a leading comma: the first one's goes.
	if len(b) > start+1 && b[start+1] == ',' {
		b = append(b[:start+1], b[start+2:]...)
	}
	return append(b, '}'), nil
}

// stringField appends `,"name":"s"` unless s is empty (omitempty).
func stringField(b []byte, name, s string) []byte {
	if s == "" {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return appendJSONString(b, s)
}

// stringsField appends `,"name":[...]` unless ss is empty (omitempty).
func stringsField(b []byte, name string, ss []string) []byte {
	if len(ss) == 0 {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':', '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, s)
	}
	return append(b, ']')
}

// boolField appends `,"name":true` when v (omitempty).
func boolField(b []byte, name string, v bool) []byte {
	if !v {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, name...)
	return append(b, `":true`...)
}

// appendJSONString appends s as encoding/json writes a string.
func appendJSONString(b []byte, s string) []byte { return wire.AppendStringHTMLSafe(b, s) }

// appendCompactJSON appends raw compacted and HTML-escaped, as
// encoding/json writes a json.RawMessage; raw must be valid JSON.
func appendCompactJSON(b []byte, raw []byte) ([]byte, error) {
	buf := bytes.NewBuffer(b)
	if err := json.Compact(buf, raw); err != nil {
		return nil, err
	}
	out := buf.Bytes()
	tail := out[len(b):]
	if bytes.ContainsAny(tail, "<>&\u2028\u2029") {
		var esc bytes.Buffer
		json.HTMLEscape(&esc, tail)
		out = append(out[:len(b)], esc.Bytes()...)
	}
	return out, nil
}
