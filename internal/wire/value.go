package wire

import (
	"bytes"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"
)

// The readers below assume b is valid JSON (accepted by Parse or Valid);
// on other input they return without panicking but their results are
// unspecified.

// skip returns the offset just after the value starting at i.
func skip(b []byte, i int) int {
	if i >= len(b) {
		return len(b)
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				i = skipString(b, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return len(b)
	}
	for i < len(b) {
		switch b[i] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return i
		}
		i++
	}
	return i
}

func skipString(b []byte, i int) int {
	f := newByteFinder(b, '"', '\\')
	for i++; i < len(b); {
		j := f.next(i)
		if j >= len(b) {
			return len(b)
		}
		if b[j] == '"' {
			return j + 1
		}
		i = j + 2 // an escape: the byte after the backslash is not an end
	}
	return len(b)
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// Members calls fn with the key and value spans of each member of the
// object at obj, in order, until fn returns false.
func Members(b []byte, obj Span, fn func(key, val Span) bool) {
	if obj.Empty() || b[obj.Start] != '{' {
		return
	}
	i := skipWS(b, obj.Start+1)
	for i < obj.End && b[i] == '"' {
		k := Span{i, skipString(b, i)}
		i = skipWS(b, k.End)
		if i >= obj.End || b[i] != ':' {
			return
		}
		i = skipWS(b, i+1)
		v := Span{i, skip(b, i)}
		if !fn(k, v) {
			return
		}
		i = skipWS(b, v.End)
		if i < obj.End && b[i] == ',' {
			i = skipWS(b, i+1)
		}
	}
}

// Elements calls fn with the span of each element of the array at arr.
func Elements(b []byte, arr Span, fn func(el Span) bool) {
	if arr.Empty() || b[arr.Start] != '[' {
		return
	}
	i := skipWS(b, arr.Start+1)
	for i < arr.End && b[i] != ']' {
		v := Span{i, skip(b, i)}
		if !fn(v) {
			return
		}
		i = skipWS(b, v.End)
		if i < arr.End && b[i] == ',' {
			i = skipWS(b, i+1)
		}
	}
}

// Lookup returns the value of member key of the object at obj.
func Lookup(b []byte, obj Span, key string) (Span, bool) {
	var out Span
	found := false
	Members(b, obj, func(k, v Span) bool {
		if KeyIs(b, k, key) {
			out, found = v, true
			return false
		}
		return true
	})
	return out, found
}

// KeyIs reports whether the string token at k decodes to key.
func KeyIs(b []byte, k Span, key string) bool {
	tok := k.In(b)
	if len(tok) < 2 {
		return false
	}
	raw := tok[1 : len(tok)-1]
	if bytes.IndexByte(raw, '\\') < 0 {
		return string(raw) == key
	}
	return unquote(tok) == key
}

// IsString, IsObject, IsArray report the type of the value at sp.
func IsString(b []byte, sp Span) bool { return !sp.Empty() && b[sp.Start] == '"' }

// IsObject reports whether the value at sp is an object.
func IsObject(b []byte, sp Span) bool { return !sp.Empty() && b[sp.Start] == '{' }

// IsArray reports whether the value at sp is an array.
func IsArray(b []byte, sp Span) bool { return !sp.Empty() && b[sp.Start] == '[' }

// IsTrue reports whether the value at sp is the literal true.
func IsTrue(b []byte, sp Span) bool { return string(sp.In(b)) == "true" }

// String decodes the string at sp. It reports false if sp is not a string.
func String(b []byte, sp Span) (string, bool) {
	if !IsString(b, sp) {
		return "", false
	}
	return unquote(sp.In(b)), true
}

// StringView is String without a copy when the string has no escapes: the
// result then shares b's memory, so b must not change while the string is
// in use (a message's bytes, which are never edited in place, qualify; a
// reused read buffer does not).
func StringView(b []byte, sp Span) (string, bool) {
	if !IsString(b, sp) {
		return "", false
	}
	tok := sp.In(b)
	raw := tok[1 : len(tok)-1]
	if len(raw) == 0 {
		return "", true
	}
	if bytes.IndexByte(raw, '\\') < 0 {
		return unsafe.String(unsafe.SliceData(raw), len(raw)), true
	}
	return unquote(tok), true
}

// Int returns the integer at sp.
func Int(b []byte, sp Span) (int64, bool) {
	if sp.Empty() {
		return 0, false
	}
	n, err := strconv.ParseInt(string(sp.In(b)), 10, 64)
	return n, err == nil
}

// unquote decodes a valid JSON string token (with its quotes).
func unquote(tok []byte) string {
	raw := tok[1 : len(tok)-1]
	if bytes.IndexByte(raw, '\\') < 0 {
		return string(raw)
	}
	out := make([]byte, 0, len(raw))
	for i := 0; i < len(raw); {
		c := raw[i]
		if c != '\\' {
			out = append(out, c)
			i++
			continue
		}
		if i+1 >= len(raw) {
			break
		}
		switch raw[i+1] {
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, _ := hex4(raw[i+2:])
			n := 6
			if utf16.IsSurrogate(r) {
				lo, _ := hex4(raw[i+8:])
				r = utf16.DecodeRune(r, lo)
				n = 12
			}
			out = utf8.AppendRune(out, r)
			i += n
			continue
		default: // " \ /
			out = append(out, raw[i+1])
		}
		i += 2
	}
	return string(out)
}

// Strings calls fn with the span and key of every string value inside the
// value at sp (object member values and array elements, at any depth; not
// object keys). key is the name of the member holding the string, or "" for
// array elements; obj is the object holding it as a member (empty for array
// elements and for sp itself).
func Strings(b []byte, sp Span, fn func(key string, obj, s Span)) {
	walkStrings(b, sp, "", Span{}, fn)
}

func walkStrings(b []byte, sp Span, key string, obj Span, fn func(string, Span, Span)) {
	if sp.Empty() {
		return
	}
	switch b[sp.Start] {
	case '"':
		fn(key, obj, sp)
	case '{':
		Members(b, sp, func(k, v Span) bool {
			if b[v.Start] == '"' || b[v.Start] == '{' || b[v.Start] == '[' {
				walkStrings(b, v, unquoteKey(b, k), sp, fn)
			}
			return true
		})
	case '[':
		Elements(b, sp, func(v Span) bool {
			walkStrings(b, v, "", Span{}, fn)
			return true
		})
	}
}

// unquoteKey decodes a key, without allocating for the keys the gateway
// reads.
func unquoteKey(b []byte, k Span) string {
	tok := k.In(b)
	if s := knownKey(tok[1 : len(tok)-1]); s != "" {
		return s
	}
	switch string(tok[1 : len(tok)-1]) {
	case "type":
		return "type"
	case "mimeType":
		return "mimeType"
	case "blob":
		return "blob"
	case "text":
		return "text"
	}
	return unquote(tok)
}
