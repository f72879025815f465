package mcpproxy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"github.com/google/jsonschema-go/jsonschema"
)

// argSchema checks a call's arguments against the tool's input schema as
// the gateway last fetched it. Beyond the schema itself, a schema that lists
// properties and says nothing of additionalProperties is treated as closed:
// an argument the tool does not declare is refused, since an agent has no
// business sending one (and an upstream might act on it).
type argSchema struct {
	resolved *jsonschema.Resolved
	props    map[string]bool
	closed   bool
}

// ErrArgumentsSchema is returned by check for arguments that do not match.
var ErrArgumentsSchema = errors.New("arguments do not match the tool's input schema")

func newArgSchema(schema any) (*argSchema, error) {
	b, err := json.Marshal(schema)
	if err != nil {
		return nil, err
	}
	var s jsonschema.Schema
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("input schema: %w", err)
	}
	// Remote references are never fetched (no Loader): resolving fails.
	rs, err := s.Resolve(nil)
	if err != nil {
		return nil, fmt.Errorf("input schema: %w", err)
	}
	a := &argSchema{resolved: rs}
	if len(s.Properties) > 0 && (s.AdditionalProperties == nil || isFalseSchema(s.AdditionalProperties)) {
		a.closed = true
		a.props = make(map[string]bool, len(s.Properties))
		for k := range s.Properties {
			a.props[k] = true
		}
	}
	return a, nil
}

// check validates raw arguments. The error names an undeclared property but
// never echoes argument values.
func (a *argSchema) check(raw json.RawMessage) error {
	var v any
	if len(bytes.TrimSpace(raw)) == 0 {
		v = map[string]any{}
	} else if err := json.Unmarshal(raw, &v); err != nil {
		return ErrArgumentsSchema
	}
	if m, ok := v.(map[string]any); ok && a.closed {
		var unknown []string
		for k := range m {
			if !a.props[k] {
				unknown = append(unknown, truncate(k, 64))
			}
		}
		if len(unknown) > 0 {
			sort.Strings(unknown)
			return fmt.Errorf("%w: undeclared properties %q", ErrArgumentsSchema, unknown)
		}
	}
	if err := a.resolved.Validate(v); err != nil {
		return ErrArgumentsSchema
	}
	return nil
}

// isFalseSchema reports whether s is the schema "false" (how the library
// decodes additionalProperties: false).
func isFalseSchema(s *jsonschema.Schema) bool {
	b, err := json.Marshal(s)
	return err == nil && string(b) == "false"
}
