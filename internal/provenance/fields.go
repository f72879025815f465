package provenance

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// A Path names fields of a structured tool result: keys from the root,
// separated by dots, "*" for any key. Lists are walked through, so
// "sender" names the sender of every element of a top-level list and
// "hotels.name" the name of every hotel.
type Path []string

// Limits of a path.
const (
	maxPathSegments = 16
	maxPathBytes    = 256
)

// ParsePath parses a path ("transactions.recipient", "*.id"; "$" is the
// whole result).
func ParsePath(s string) (Path, error) {
	if s == "$" {
		return Path{}, nil
	}
	if s == "" || len(s) > maxPathBytes {
		return nil, fmt.Errorf("path must be 1 to %d bytes", maxPathBytes)
	}
	p := Path(strings.Split(strings.TrimPrefix(s, "$."), "."))
	if len(p) > maxPathSegments {
		return nil, fmt.Errorf("path has more than %d segments", maxPathSegments)
	}
	for _, seg := range p {
		if seg == "" {
			return nil, errors.New("path has an empty segment")
		}
	}
	return p, nil
}

// String is the path as written.
func (p Path) String() string { return strings.Join(p, ".") }

// maxDocDepth bounds the walk of a decoded result.
const maxDocDepth = 32

// ParseDocument decodes a tool result's text as JSON, or else as YAML, when
// it is a mapping or a list. It returns nil for anything else (prose, a
// scalar, a parse error): such text follows its source's label.
func ParseDocument(text string) any {
	t := strings.TrimSpace(text)
	if t == "" {
		return nil
	}
	var doc any
	if t[0] == '{' || t[0] == '[' {
		d := json.NewDecoder(strings.NewReader(t))
		d.UseNumber()
		if d.Decode(&doc) == nil {
			return structured(doc)
		}
	}
	if yaml.Unmarshal([]byte(t), &doc) != nil {
		return nil
	}
	return structured(doc)
}

func structured(doc any) any {
	switch doc.(type) {
	case map[string]any, []any:
		return doc
	}
	return nil
}

// Values calls fn with every scalar at path p in doc (strings as they are,
// numbers and booleans as written).
func (p Path) Values(doc any, fn func(string)) {
	walk(doc, p, 0, fn)
}

func walk(v any, p Path, depth int, fn func(string)) {
	if depth > maxDocDepth {
		return
	}
	if list, ok := v.([]any); ok {
		for _, e := range list {
			walk(e, p, depth+1, fn)
		}
		return
	}
	if len(p) == 0 {
		scalars(v, depth, fn)
		return
	}
	m, ok := v.(map[string]any)
	if !ok {
		return
	}
	if p[0] == "*" {
		for _, e := range m {
			walk(e, p[1:], depth+1, fn)
		}
		return
	}
	if e, ok := m[p[0]]; ok {
		walk(e, p[1:], depth+1, fn)
	}
}

// scalars calls fn with every scalar inside v.
func scalars(v any, depth int, fn func(string)) {
	if depth > maxDocDepth {
		return
	}
	switch x := v.(type) {
	case string:
		fn(x)
	case json.Number:
		fn(x.String())
	case int:
		fn(strconv.Itoa(x))
	case float64:
		fn(strconv.FormatFloat(x, 'f', -1, 64))
	case bool:
		fn(strconv.FormatBool(x))
	case []any:
		for _, e := range x {
			scalars(e, depth+1, fn)
		}
	case map[string]any:
		for _, e := range x {
			scalars(e, depth+1, fn)
		}
	default:
		if x != nil {
			fn(fmt.Sprint(x))
		}
	}
}
