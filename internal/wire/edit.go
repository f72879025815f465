package wire

import (
	"slices"
	"strconv"
	"unicode/utf8"
)

// Edit replaces the bytes of At with With. An empty At inserts at
// At.Start.
type Edit struct {
	At   Span
	With []byte
}

// Apply returns a copy of b with edits applied. Edits must not overlap;
// they may come in any order. Without edits it returns b itself.
func Apply(b []byte, edits ...Edit) []byte {
	if len(edits) == 0 {
		return b
	}
	slices.SortFunc(edits, func(x, y Edit) int { return x.At.Start - y.At.Start })
	n := len(b)
	for _, e := range edits {
		n += len(e.With) - (e.At.End - e.At.Start)
	}
	out := make([]byte, 0, n)
	last := 0
	for _, e := range edits {
		if e.At.Start < last {
			panic("wire: overlapping edits")
		}
		out = append(out, b[last:e.At.Start]...)
		out = append(out, e.With...)
		last = e.At.End
	}
	return append(out, b[last:]...)
}

// Replace is the edit that replaces the value at sp.
func Replace(sp Span, with []byte) Edit { return Edit{At: sp, With: with} }

// InsertMember is the edit that adds member key with the raw value val at
// the start of the object at obj (which must not already have key).
func InsertMember(b []byte, obj Span, key string, val []byte) Edit {
	return InsertMembers(b, obj, AppendMember(nil, key, val))
}

// InsertMembers is the edit that adds members, "key":value pairs separated
// by commas (see AppendMember), at the start of the object at obj (which
// must have none of their keys). Members for one object go in one edit:
// two insertions at the same place would each decide on its comma from
// the original bytes, and together write two members without one.
func InsertMembers(b []byte, obj Span, members []byte) Edit {
	at := obj.Start + 1
	if b[skipWS(b, at)] != '}' {
		members = append(members[:len(members):len(members)], ',')
	}
	return Edit{At: Span{at, at}, With: members}
}

// AppendMember appends the member "key":val to dst, after a comma unless
// dst is empty.
func AppendMember(dst []byte, key string, val []byte) []byte {
	if len(dst) > 0 {
		dst = append(dst, ',')
	}
	dst = AppendString(dst, key)
	dst = append(dst, ':')
	return append(dst, val...)
}

// RemoveMember is the edit that removes the member whose key is at k and
// value at v from the object at obj.
func RemoveMember(b []byte, obj, k, v Span) Edit {
	end := skipWS(b, v.End)
	if end < obj.End && b[end] == ',' {
		return Edit{At: Span{k.Start, skipWS(b, end+1)}}
	}
	// The last member: take the comma before it, if any.
	start := k.Start
	for j := k.Start - 1; j > obj.Start; j-- {
		if b[j] == ',' {
			start = j
			break
		}
		if b[j] != ' ' && b[j] != '\t' && b[j] != '\n' && b[j] != '\r' {
			break
		}
	}
	return Edit{At: Span{start, v.End}}
}

const hexDigits = "0123456789abcdef"

// AppendString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD.
func AppendString(dst []byte, s string) []byte { return appendString(dst, s, &plainSafe, false) }

// AppendStringHTMLSafe appends s as encoding/json's Marshal writes it: as
// AppendString, and <, > and & escaped, \b and \f in their short form,
// U+2028 and U+2029 escaped (the audit log's event bodies, which must be
// what json.Marshal would write).
func AppendStringHTMLSafe(dst []byte, s string) []byte {
	return appendString(dst, s, &htmlSafe, true)
}

// plainSafe and htmlSafe mark the ASCII bytes a JSON string holds as they
// are.
var plainSafe, htmlSafe = func() (p, h [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		p[c] = c != '"' && c != '\\'
		h[c] = p[c] && c != '<' && c != '>' && c != '&'
	}
	return p, h
}()

func appendString(dst []byte, s string, safe *[utf8.RuneSelf]bool, html bool) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if safe[c] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c == '\n':
				dst = append(dst, '\\', 'n')
			case c == '\r':
				dst = append(dst, '\\', 'r')
			case c == '\t':
				dst = append(dst, '\\', 't')
			case html && c == '\b':
				dst = append(dst, '\\', 'b')
			case html && c == '\f':
				dst = append(dst, '\\', 'f')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
		case html && (r == '\u2028' || r == '\u2029'):
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// Quote returns s as a JSON string.
func Quote(s string) []byte { return AppendString(nil, s) }

// AppendInt appends n as a JSON number.
func AppendInt(dst []byte, n int64) []byte { return strconv.AppendInt(dst, n, 10) }

// NewRequest is a request message.
func NewRequest(id []byte, method string, params []byte) []byte {
	b := append(make([]byte, 0, 48+len(method)+len(params)), `{"jsonrpc":"2.0","id":`...)
	b = append(b, id...)
	b = append(b, `,"method":`...)
	b = AppendString(b, method)
	if len(params) > 0 {
		b = append(b, `,"params":`...)
		b = append(b, params...)
	}
	return append(b, '}')
}

// NewNotification is a notification message.
func NewNotification(method string, params []byte) []byte {
	b := append(make([]byte, 0, 40+len(method)+len(params)), `{"jsonrpc":"2.0","method":`...)
	b = AppendString(b, method)
	if len(params) > 0 {
		b = append(b, `,"params":`...)
		b = append(b, params...)
	}
	return append(b, '}')
}

// NewResponse is a result message answering id.
func NewResponse(id, result []byte) []byte {
	b := append(make([]byte, 0, 36+len(id)+len(result)), `{"jsonrpc":"2.0","id":`...)
	b = append(b, id...)
	b = append(b, `,"result":`...)
	b = append(b, result...)
	return append(b, '}')
}

// NewResponseError is an error message answering id with the raw error
// object errObj (as another peer wrote it).
func NewResponseError(id, errObj []byte) []byte {
	b := append(make([]byte, 0, 36+len(id)+len(errObj)), `{"jsonrpc":"2.0","id":`...)
	if id == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, id...)
	}
	b = append(b, `,"error":`...)
	b = append(b, errObj...)
	return append(b, '}')
}

// NewError is an error message answering id (null when id is nil). data,
// if not nil, must be a JSON value.
func NewError(id []byte, code int64, message string, data []byte) []byte {
	b := append(make([]byte, 0, 64+len(message)+len(data)), `{"jsonrpc":"2.0","id":`...)
	if id == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, id...)
	}
	b = append(b, `,"error":{"code":`...)
	b = strconv.AppendInt(b, code, 10)
	b = append(b, `,"message":`...)
	b = AppendString(b, message)
	if data != nil {
		b = append(b, `,"data":`...)
		b = append(b, data...)
	}
	return append(b, "}}"...)
}

// WithID returns msg with its id replaced by id (msg's id must be present).
func WithID(m *Message, id []byte) []byte {
	return Apply(m.Raw, Replace(m.ID, id))
}

// JSON-RPC error codes.
const (
	CodeParseError     = -32700
	CodeInvalidRequest = -32600
	CodeMethodNotFound = -32601
	CodeInvalidParams  = -32602
	CodeInternalError  = -32603
)
