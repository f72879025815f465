package mcpproxy

import (
	"errors"
	"strings"
	"testing"
)

func TestArgSchema(t *testing.T) {
	t.Parallel()
	a, err := newArgSchema([]byte(`{"type":"object","required":["path"],"properties":{"path":{"type":"string","maxLength":10},"count":{"type":"integer","maximum":5}}}`))
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
	open, _ := newArgSchema([]byte(`{"type":"object","properties":{"a":{}},"additionalProperties":true}`))
	if err := open.check([]byte(`{"b":1}`)); err != nil {
		t.Errorf("a schema that allows additional properties refused one: %v", err)
	}
	if _, err := newArgSchema([]byte(`{"type":"object","$ref":"https://evil.example/schema.json"}`)); err == nil {
		t.Error("a remote $ref was accepted (it would need fetching)")
	}
}

// A schema violation is described by argument and constraint, never by
// the value (which may be a secret).
func TestSchemaErrorsNameTheArgumentNotTheValue(t *testing.T) {
	t.Parallel()
	a, err := newArgSchema([]byte(`{"type":"object","required":["path"],"properties":{"path":{"type":"string","maxLength":5,"pattern":"^/"},"n":{"type":"integer"},"list":{"type":"array","items":{"type":"object","properties":{"k":{"enum":["a","b"]}}}}}}`))
	if err != nil {
		t.Fatal(err)
	}
	const secret = "sk-live-0123456789abcdef"
	for args, want := range map[string]string{
		`{"path":"` + secret + `"}`:          `argument "path": fails the "maxLength" constraint`,
		`{"path":"/a","n":"` + secret + `"}`: `argument "n": has type string, the schema wants "integer"`,
		`{}`:                                 `missing required properties ["path"]`,
		`{"path":"/a","list":[{"k":"` + secret + `"}]}`: `argument "list[].k": fails the "enum" constraint`,
		`{"path":"/a","zzz":1}`:                         `the tool declares no arguments ["zzz"]`,
		`[1]`:                                           `arguments must be an object, not an array`,
	} {
		err := a.check([]byte(args))
		if err == nil || !errors.Is(err, ErrArgumentsSchema) || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), secret) {
			t.Errorf("%s: %v; want %q without the value", args, err, want)
		}
	}
}
