package config

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Decoding errors come from encoding/json behind the YAML front end: they
// name Go types and no line. locate rewrites the common ones into what a
// person editing the YAML file needs: line and column, the field's path,
// what was expected, and for a misspelt key the closest known one.

var (
	unknownFieldRE = regexp.MustCompile(`unknown field "([^"]+)"`)
	typeErrorRE    = regexp.MustCompile(`cannot unmarshal (\w+) into Go struct field \w+\.([\w.\-]+) of type ([\w\[\]\.*]+)`)
)

// place is where a key is in the file, and its path.
type place struct {
	path      []string // keys, with [i] for sequence items
	line, col int
	value     *yaml.Node
}

func (p place) String() string {
	return fmt.Sprintf("line %d, column %d: %s", p.line, p.col, joinPath(p.path))
}

func joinPath(path []string) string {
	var b strings.Builder
	for i, s := range path {
		if i > 0 && !strings.HasPrefix(s, "[") {
			b.WriteByte('.')
		}
		b.WriteString(s)
	}
	return b.String()
}

// keys lists every mapping key of the document with where it is.
func keys(data []byte) []place {
	var root yaml.Node
	if yaml.Unmarshal(data, &root) != nil {
		return nil
	}
	return keysOf(&root)
}

// keysOf lists every mapping key under root with where it is.
func keysOf(root *yaml.Node) []place {
	var out []place
	var walk func(n *yaml.Node, path []string, depth int)
	walk = func(n *yaml.Node, path []string, depth int) {
		if depth > 64 {
			return
		}
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, path, depth+1)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k := n.Content[i]
				p := append(append([]string(nil), path...), k.Value)
				out = append(out, place{path: p, line: k.Line, col: k.Column, value: n.Content[i+1]})
				walk(n.Content[i+1], p, depth+1)
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				walk(c, append(append([]string(nil), path...), fmt.Sprintf("[%d]", i)), depth+1)
			}
		}
	}
	walk(root, nil, 0)
	return out
}

// locate rewrites a decoding error of data, or returns it as it is.
func locate(data []byte, err error) error {
	msg := err.Error()
	if m := unknownFieldRE.FindStringSubmatch(msg); m != nil {
		for _, p := range keys(data) {
			if p.path[len(p.path)-1] != m[1] {
				continue
			}
			known := knownKeys(p.path[:len(p.path)-1])
			if known == nil || slices.Contains(known, m[1]) {
				continue // a free-form map, or a place where the key is valid
			}
			hint := ""
			if s := closest(m[1], known); s != "" {
				hint = fmt.Sprintf(" (did you mean %q?)", s)
			}
			return fmt.Errorf("%s: unknown field%s", p, hint)
		}
		return fmt.Errorf("unknown field %q", m[1])
	}
	if m := typeErrorRE.FindStringSubmatch(msg); m != nil {
		want := strings.Split(m[2], ".")
		for _, p := range keys(data) {
			if sameFields(p.path, want) {
				return fmt.Errorf("%s: want %s, got %s", p, kindName(m[3]), article(m[1]))
			}
		}
		return fmt.Errorf("%s: want %s, got %s", m[2], kindName(m[3]), article(m[1]))
	}
	return fmt.Errorf("parse config: %w", err)
}

// sameFields reports whether path (with sequence indexes) is the field
// path want (without them).
func sameFields(path, want []string) bool {
	var fields []string
	for _, s := range path {
		if !strings.HasPrefix(s, "[") {
			fields = append(fields, s)
		}
	}
	if len(fields) != len(want) {
		return false
	}
	for i := range want {
		if fields[i] != want[i] {
			return false
		}
	}
	return true
}

// knownKeys lists the fields the configuration accepts at path (nil where
// keys are free-form, or the path leads nowhere known).
func knownKeys(path []string) []string {
	t, ok := typeAt(path)
	if !ok || t.Kind() != reflect.Struct {
		return nil
	}
	var out []string
	for i := range t.NumField() {
		if name := tagName(t.Field(i)); name != "" {
			out = append(out, name)
		}
	}
	return out
}

// typeAt is the Go type of the value at path in a Config (pointers and
// slices taken off); false where path leaves the structs (a free-form map)
// or names no field.
func typeAt(path []string) (reflect.Type, bool) {
	t := reflect.TypeOf(Config{})
	for _, s := range path {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
			t = t.Elem()
		}
		if strings.HasPrefix(s, "[") {
			continue
		}
		if t.Kind() != reflect.Struct {
			return nil, false
		}
		f, ok := fieldByTag(t, s)
		if !ok {
			return nil, false
		}
		t = f.Type
	}
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	return t, true
}

// checkKeys reports what the strict decoder would report one at a time,
// or without a line: every YAML syntax error first (alone: nothing after
// it can be read), then an empty document; then every key the configuration does not have, with
// the closest known one, and every duration that does not parse, all at
// once, in file order, each with its line, column and path.
func checkKeys(data []byte) error {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return fmt.Errorf("not valid YAML: %s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	places := keysOf(&root)
	if len(places) == 0 {
		return errors.New("the configuration is empty: it begins with `version: 1` (see examples/full.yaml)")
	}
	durationType := reflect.TypeOf(Duration(0))
	var errs []error
	for _, p := range places {
		name := p.path[len(p.path)-1]
		if name == "<<" {
			continue // a YAML merge key: what it merges is checked where it is defined
		}
		known := knownKeys(p.path[:len(p.path)-1])
		if known != nil && !slices.Contains(known, name) {
			hint := ""
			if s := closest(name, known); s != "" {
				hint = fmt.Sprintf(" (did you mean %q?)", s)
			}
			errs = append(errs, fmt.Errorf("%s: unknown field%s", p, hint))
			continue
		}
		if t, ok := typeAt(p.path); ok && t == durationType && p.value.Kind == yaml.ScalarNode && p.value.Tag != "!!null" {
			switch d, err := time.ParseDuration(p.value.Value); {
			case err != nil:
				errs = append(errs, fmt.Errorf("%s: %q is not a duration: write it as 30s, 10m, 1h30m", p, truncateValue(p.value.Value)))
			case d < 0:
				errs = append(errs, fmt.Errorf("%s: %q is negative", p, truncateValue(p.value.Value)))
			}
		}
	}
	return errors.Join(errs...)
}

// truncateValue shortens a value quoted in an error.
func truncateValue(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

func fieldByTag(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		if tagName(t.Field(i)) == name {
			return t.Field(i), true
		}
	}
	return reflect.StructField{}, false
}

func tagName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
	if name == "-" || !f.IsExported() {
		return ""
	}
	return name
}

// closest is the known key nearest to s, if it is near enough to be a
// misspelling.
func closest(s string, known []string) string {
	best, bestD := "", len(s)/3+2
	for _, k := range known {
		if d := editDistance(s, k); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// kindName says what a Go type is in the file's terms.
func kindName(goType string) string {
	switch {
	case strings.HasPrefix(goType, "[]"):
		return "a list"
	case strings.HasPrefix(goType, "map["):
		return "a mapping"
	case goType == "string", goType == "config.Duration":
		return "a string"
	case goType == "bool":
		return "true or false"
	case strings.HasPrefix(goType, "int"), strings.HasPrefix(goType, "uint"):
		return "a whole number"
	case strings.HasPrefix(goType, "float"):
		return "a number"
	}
	return "a mapping"
}

// article names a JSON value kind as the file shows it.
func article(jsonKind string) string {
	switch jsonKind {
	case "array":
		return "a list"
	case "object":
		return "a mapping"
	case "number":
		return "a number"
	case "bool":
		return "true or false"
	}
	return "a " + jsonKind
}
