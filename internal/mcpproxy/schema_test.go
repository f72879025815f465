package mcpproxy

import (
	"errors"
	"testing"
)

func TestArgSchema(t *testing.T) {
	t.Parallel()
	a, err := newArgSchema(map[string]any{
		"type":     "object",
		"required": []any{"path"},
		"properties": map[string]any{
			"path":  map[string]any{"type": "string", "maxLength": 10},
			"count": map[string]any{"type": "integer", "maximum": 5},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	for args, ok := range map[string]bool{
		`{"path":"a"}`:              true,
		`{"path":"a","count":5}`:    true,
		``:                          false, // missing required
		`{"path":1}`:                false,
		`{"path":"aaaaaaaaaaaaaa"}`: false, // oversize value
		`{"path":"a","count":6}`:    false,
		`{"path":"a","extra":true}`: false, // undeclared
		`[1,2]`:                     false,
		`{"path":`:                  false,
	} {
		if err := a.check([]byte(args)); (err == nil) != ok || (err != nil && !errors.Is(err, ErrArgumentsSchema)) {
			t.Errorf("%s: %v, want ok=%v", args, err, ok)
		}
	}
	open, _ := newArgSchema(map[string]any{"type": "object", "properties": map[string]any{"a": map[string]any{}}, "additionalProperties": true})
	if err := open.check([]byte(`{"b":1}`)); err != nil {
		t.Errorf("a schema that allows additional properties refused one: %v", err)
	}
	if _, err := newArgSchema(map[string]any{"type": "object", "$ref": "https://evil.example/schema.json"}); err == nil {
		t.Error("a remote $ref was accepted (it would need fetching)")
	}
}
