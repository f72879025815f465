package provenance

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/portcullis-dev/portcullis/internal/screen"
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
			if _, err := d.Token(); err != io.EOF {
				return nil // trailing data: not one document
			}
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

// Limits of what a record the user named can vouch for.
const (
	maxFieldBytes  = 128 // a field longer than this is text, not a value
	maxFieldSpaces = 4
	maxRecords     = 4096
)

// ObserveNamedRecords makes the short fields of each record in doc that
// the user's request names (Named) as trusted as the request itself: "the
// same participants as the Introductory meeting" vouches for that
// meeting's participants, not for anything its description says. A record
// is a map that is the document or an element of a list in it. Only short
// values count (an address, an ID, a name, a time); free text in a named
// record stays as its source is.
func (t *Tracker) ObserveNamedRecords(doc any) {
	n := 0
	forEachRecord(doc, 0, &n, func(rec map[string]any) {
		var short []string
		for _, v := range rec {
			shortValues(v, 0, func(s string) { short = append(short, s) })
		}
		named := false
		for _, s := range short {
			if named = t.Named(s); named {
				break
			}
		}
		if !named {
			return
		}
		for _, s := range short {
			t.Observe(screen.Normalize(s).Text, Intent)
		}
	})
}

func forEachRecord(v any, depth int, n *int, fn func(map[string]any)) {
	if depth > maxDocDepth || *n >= maxRecords {
		return
	}
	switch x := v.(type) {
	case map[string]any:
		*n++
		fn(x)
		for _, e := range x {
			if l, ok := e.([]any); ok {
				forEachRecord(l, depth+1, n, fn)
			}
		}
	case []any:
		for _, e := range x {
			forEachRecord(e, depth+1, n, fn)
		}
	}
}

// shortValues calls fn with the scalars of a field (a list of scalars
// counts) that are values rather than text.
func shortValues(v any, depth int, fn func(string)) {
	if depth > 1 {
		return
	}
	if l, ok := v.([]any); ok {
		for _, e := range l {
			shortValues(e, depth+1, fn)
		}
		return
	}
	var s string
	switch x := v.(type) {
	case string:
		s = x
	case json.Number:
		s = x.String()
	case int:
		s = strconv.Itoa(x)
	case float64:
		s = strconv.FormatFloat(x, 'f', -1, 64)
	default:
		return
	}
	if len(s) <= maxFieldBytes && strings.Count(s, " ")+strings.Count(s, "\n") <= maxFieldSpaces {
		fn(s)
	}
}
