package mcpproxy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/google/jsonschema-go/jsonschema"

	"github.com/portcullis-dev/portcullis/internal/wire"
)

// argSchema checks a call's arguments against the tool's input schema as
// the gateway last fetched it. Beyond the schema itself, a schema that lists
// properties and says nothing of additionalProperties is treated as closed:
// an argument the tool does not declare is refused, since an agent has no
// business sending one (and an upstream might act on it).
type argSchema struct {
	flat     *flatSchema // nil unless the schema is flat (schema_flat.go)
	resolved *jsonschema.Resolved
	props    map[string]bool   // declared properties
	folded   map[string]string // wire.FoldKey of each declared property -> the property
	closed   bool
}

// ErrArgumentsSchema is wrapped by the errors check returns.
var ErrArgumentsSchema = errors.New("arguments do not match the tool's input schema")

// schemaError says which argument fails which constraint, in words a model
// can act on. It never holds argument values: only names from the schema
// (or of undeclared arguments), keywords and JSON types.
type schemaError struct {
	where string // "path", "items[].name", or "" for the arguments object
	what  string
}

func (e *schemaError) Error() string {
	if e.where == "" {
		return e.what
	}
	return fmt.Sprintf("argument %q: %s", e.where, e.what)
}

func (e *schemaError) Unwrap() error { return ErrArgumentsSchema }

func newArgSchema(schema []byte) (*argSchema, error) {
	var s jsonschema.Schema
	if err := json.Unmarshal(schema, &s); err != nil {
		return nil, fmt.Errorf("input schema: %w", err)
	}
	// Remote references are never fetched (no Loader): resolving fails.
	rs, err := s.Resolve(nil)
	if err != nil {
		return nil, fmt.Errorf("input schema: %w", err)
	}
	a := &argSchema{resolved: rs}
	if len(s.Properties) > 0 {
		a.closed = s.AdditionalProperties == nil || isFalseSchema(s.AdditionalProperties)
		a.props = make(map[string]bool, len(s.Properties))
		a.folded = make(map[string]string, len(s.Properties))
		for k := range s.Properties {
			a.props[k] = true
			if f := wire.FoldKey([]byte(k)); a.folded[f] == "" || k < a.folded[f] {
				a.folded[f] = k
			}
		}
	}
	// The flat check stands in for the validator only where the validator
	// accepts the flat schema's simplest instance: a validator that refuses
	// every instance of a schema (one for a JSON Schema draft it does not
	// implement) stays the judge of it.
	if f := compileFlat(schema); f != nil && a.validate(f.sample()) == nil {
		a.flat = f
	}
	return a, nil
}

// check validates raw arguments (absent arguments are an empty object).
func (a *argSchema) check(raw []byte) error {
	if a.flat != nil && a.flat.vouch(raw) {
		return nil
	}
	return a.validate(raw)
}

// validate is check by the full validator, on the arguments decoded.
func (a *argSchema) validate(raw []byte) error {
	var v any
	if len(bytes.TrimSpace(raw)) == 0 {
		v = map[string]any{}
	} else if err := json.Unmarshal(raw, &v); err != nil {
		return &schemaError{what: "arguments are not valid JSON"}
	}
	m, ok := v.(map[string]any)
	if !ok {
		return &schemaError{what: fmt.Sprintf("arguments must be an object, not %s", jsonTypeName(v))}
	}
	var unknown []string
	for k := range m {
		if a.props[k] {
			continue
		}
		// An undeclared name that differs from a declared one only in
		// letter case is refused even where the schema is open: a server
		// decoding into structs (encoding/json) reads it as the declared
		// argument, which policy and this check never saw.
		// (Top-level arguments: a nested object's keys are the schema's
		// business where it closes them.)
		if like := a.folded[wire.FoldKey([]byte(k))]; like != "" {
			return &schemaError{where: truncate(k, 64), what: fmt.Sprintf("differs from the declared argument %q only in letter case", truncate(like, 64))}
		}
		if a.closed {
			unknown = append(unknown, truncate(k, 64))
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return &schemaError{what: fmt.Sprintf("the tool declares no arguments %q", unknown)}
	}
	if err := a.resolved.Validate(v); err != nil {
		return describeSchemaError(err.Error())
	}
	return nil
}

// The validator's messages quote the failing value; only their structure
// is kept: where (the schema path of the failing keyword) and what (the
// keyword, and for some the names and types involved).
var (
	validatingRE = regexp.MustCompile(`validating ([^:]*):`)
	keywordRE    = regexp.MustCompile(`^\s*([A-Za-z]+)(?:\[[^\]]*\])?:`)
	typeRE       = regexp.MustCompile(`has type "([a-z]+)", want (?:one of )?(\[[^\]]*\]|"[a-z]+")`)
	missingRE    = regexp.MustCompile(`missing properties:? (\[[^\]]*\])`)
)

func describeSchemaError(msg string) error {
	where := ""
	rest := msg
	for _, m := range validatingRE.FindAllStringSubmatchIndex(msg, -1) {
		where = msg[m[2]:m[3]]
		rest = msg[m[1]:]
	}
	e := &schemaError{where: schemaPathToArgument(where)}
	kw := ""
	if m := keywordRE.FindStringSubmatch(rest); m != nil {
		kw = m[1]
	}
	switch kw {
	case "type":
		if m := typeRE.FindStringSubmatch(rest); m != nil {
			e.what = fmt.Sprintf("has type %s, the schema wants %s", m[1], m[2])
			return e
		}
	case "required":
		if m := missingRE.FindStringSubmatch(rest); m != nil && len(m[1]) < 512 {
			e.what = "missing required properties " + m[1]
			return e
		}
	case "":
		e.what = "does not match the tool's input schema"
		return e
	}
	e.what = fmt.Sprintf("fails the %q constraint of the tool's input schema", kw)
	return e
}

// schemaPathToArgument turns "/properties/a/items/properties/b" into
// "a[].b".
func schemaPathToArgument(p string) string {
	parts := strings.Split(strings.Trim(p, "/"), "/")
	var out strings.Builder
	for i := 0; i < len(parts); i++ {
		switch parts[i] {
		case "properties":
			if i+1 < len(parts) {
				if out.Len() > 0 {
					out.WriteByte('.')
				}
				out.WriteString(truncate(parts[i+1], 64))
				i++
			}
		case "items", "prefixItems":
			out.WriteString("[]")
		}
	}
	return out.String()
}

func jsonTypeName(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case []any:
		return "an array"
	case string:
		return "a string"
	case float64:
		return "a number"
	case bool:
		return "a boolean"
	}
	return "another type"
}

// isFalseSchema reports whether s is the schema "false" (how the library
// decodes additionalProperties: false).
func isFalseSchema(s *jsonschema.Schema) bool {
	b, err := json.Marshal(s)
	return err == nil && string(b) == "false"
}
