package mcpproxy

import (
	"bytes"
	"encoding/json"

	"github.com/portcullis-dev/portcullis/internal/wire"
)

// flatSchema is the shape most tools' input schemas have: an object whose
// declared properties each have one scalar type (string, integer, number,
// boolean) and no other constraint, some of them required, no other
// property allowed. Arguments against such a schema are checked on their
// bytes, without decoding them into Go values for the full validator
// (which, with the decoding, was most of the arguments stage's time).
//
// It only ever vouches: arguments it cannot vouch for (a violation, or a
// value it does not judge, such as 1.0 for an integer or a number too long
// to decode) go to the full validator, which decides and words every
// refusal. So it may be stricter than the validator, never looser
// (FuzzFlatSchemaNeverLooser).
type flatSchema struct {
	props    map[string]scalarType
	required []string
}

type scalarType uint8

const (
	scalarString scalarType = iota + 1
	scalarInteger
	scalarNumber
	scalarBoolean
)

var scalarTypes = map[string]scalarType{
	"string": scalarString, "integer": scalarInteger, "number": scalarNumber, "boolean": scalarBoolean,
}

// Keywords a flat schema may carry besides its structure: annotations,
// which constrain nothing.
var annotationKeywords = map[string]bool{"title": true, "description": true, "$comment": true}

// compileFlat returns the flat form of schema, or nil if schema is not
// flat. Any keyword outside the few it knows makes it not flat.
func compileFlat(schema []byte) *flatSchema {
	var root map[string]json.RawMessage
	if json.Unmarshal(schema, &root) != nil {
		return nil
	}
	f := &flatSchema{props: map[string]scalarType{}}
	closed := false
	for k, v := range root {
		switch {
		case k == "type":
			if !jsonStringIs(v, "object") {
				return nil
			}
		case k == "properties":
			var props map[string]map[string]json.RawMessage
			if json.Unmarshal(v, &props) != nil || props == nil {
				return nil
			}
			for name, p := range props {
				t, ok := flatProperty(p)
				if !ok {
					return nil
				}
				f.props[name] = t
			}
		case k == "required":
			if json.Unmarshal(v, &f.required) != nil {
				return nil
			}
		case k == "additionalProperties":
			if string(bytes.TrimSpace(v)) != "false" {
				return nil
			}
			closed = true
		case k == "$schema", annotationKeywords[k]:
		default:
			return nil
		}
	}
	if _, typed := root["type"]; !typed {
		return nil
	}
	// Open to undeclared properties (argSchema closes a schema only when
	// it declares some), whose values it would have to judge: not flat.
	if !closed && len(f.props) == 0 {
		return nil
	}
	return f
}

// flatProperty returns the type of a property schema holding one scalar
// type and annotations only.
func flatProperty(p map[string]json.RawMessage) (scalarType, bool) {
	var t scalarType
	for k, v := range p {
		switch {
		case k == "type":
			var name string
			if json.Unmarshal(v, &name) != nil {
				return 0, false
			}
			t = scalarTypes[name]
		case annotationKeywords[k]:
		default:
			return 0, false
		}
	}
	return t, t != 0
}

func jsonStringIs(v json.RawMessage, want string) bool {
	var s string
	return json.Unmarshal(v, &s) == nil && s == want
}

// sample is the simplest instance of the schema: its required properties,
// each a zero value of its type.
func (f *flatSchema) sample() []byte {
	zero := map[scalarType]any{scalarString: "", scalarInteger: 0, scalarNumber: 0, scalarBoolean: false}
	m := map[string]any{}
	for _, r := range f.required {
		m[r] = zero[f.props[r]] // an undeclared required name: nil, which fails
	}
	b, _ := json.Marshal(m)
	return b
}

// maxFlatDepth is the nesting Valid may see in arguments a flat schema
// vouches for: the object, and scalars in it.
const maxFlatDepth = 1

// vouch reports whether raw (absent or blank: no arguments) surely
// satisfies the schema.
func (f *flatSchema) vouch(raw []byte) bool {
	if len(bytes.TrimSpace(raw)) == 0 { // as the validator reads no arguments
		return len(f.required) == 0
	}
	if wire.Valid(raw, maxFlatDepth) != nil {
		return false // not JSON, not an object of scalars, or a duplicate key
	}
	raw = bytes.Trim(raw, " \t\r\n") // JSON's whitespace only, as Valid allows
	obj := wire.Span{Start: 0, End: len(raw)}
	if !wire.IsObject(raw, obj) {
		return false
	}
	ok := true
	seen := 0 // required properties present, as a bit set (see below)
	wire.Members(raw, obj, func(k, v wire.Span) bool {
		name, _ := wire.StringView(raw, k)
		ok = scalarFits(f.props[name], v.In(raw)) // an undeclared name has no type: fits none
		for i, r := range f.required {
			if r == name && i < 63 {
				seen |= 1 << i
			}
		}
		return ok
	})
	// More than 63 required properties: not judged here.
	return ok && len(f.required) < 64 && seen == 1<<len(f.required)-1
}

// scalarFits reports whether the JSON value tok surely has type t as the
// validator reads it. Numbers are vouched for only in plain notation and
// short enough to decode exactly as a float64 would: an integer of at
// most 15 digits, a number of at most 32 characters without an exponent.
func scalarFits(t scalarType, tok []byte) bool {
	if len(tok) == 0 {
		return false
	}
	switch t {
	case scalarString:
		return tok[0] == '"'
	case scalarBoolean:
		return string(tok) == "true" || string(tok) == "false"
	case scalarInteger:
		digits := bytes.TrimPrefix(tok, []byte("-"))
		if len(digits) == 0 || len(digits) > 15 {
			return false
		}
		for _, c := range digits {
			if c < '0' || c > '9' {
				return false
			}
		}
		return true
	case scalarNumber:
		return (tok[0] == '-' || tok[0] >= '0' && tok[0] <= '9') && len(tok) <= 32 && !bytes.ContainsAny(tok, "eE")
	}
	return false
}
