package mcpproxy

import (
	"encoding/json"
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
	// A name that is a declared one but for letter case is refused, open
	// schema or closed: encoding/json would read it as the declared one.
	closed, _ := newArgSchema([]byte(`{"type":"object","properties":{"a":{}}}`))
	for _, a := range []*argSchema{open, closed} {
		for _, args := range []string{`{"A":1}`, `{"a":1,"A":2}`} {
			if err := a.check([]byte(args)); err == nil || !strings.Contains(err.Error(), `differs from the declared argument "a" only in letter case`) {
				t.Errorf("%s (closed %v): %v", args, a.closed, err)
			}
		}
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

// The schemas SDKs generate for simple tools are flat; a keyword the flat
// check does not know makes a schema go to the full validator.
func TestCompileFlat(t *testing.T) {
	t.Parallel()
	for schema, flat := range map[string]bool{
		`{"type":"object","properties":{"size":{"type":"integer"}}}`:                                                                                    true,
		`{"type":"object","properties":{"path":{"type":"string","description":"where"}},"required":["path"],"additionalProperties":false}`:              true,
		`{"$schema":"http://json-schema.org/draft-07/schema#","type":"object","properties":{"a":{"type":"number"},"b":{"type":"boolean"}},"title":"t"}`: true,
		`{"type":"object","additionalProperties":false}`:                                                                                                true,
		`{"type":"object"}`:                                                                   false, // open: undeclared values would need judging
		`{"type":"object","properties":{}}`:                                                   false,
		`{"properties":{"a":{"type":"string"}}}`:                                              false, // no type
		`{"type":"array"}`:                                                                    false,
		`{"type":["object"],"properties":{"a":{"type":"string"}}}`:                            false,
		`{"type":"object","properties":{"a":{"type":"string","maxLength":3}}}`:                false,
		`{"type":"object","properties":{"a":{"type":"string","enum":["x"]}}}`:                 false,
		`{"type":"object","properties":{"a":{"type":["string","null"]}}}`:                     false,
		`{"type":"object","properties":{"a":{"type":"object"}}}`:                              false,
		`{"type":"object","properties":{"a":{}}}`:                                             false,
		`{"type":"object","properties":{"a":{"type":"string"}},"additionalProperties":true}`:  false,
		`{"type":"object","properties":{"a":{"type":"string"}},"additionalProperties":{}}`:    false,
		`{"type":"object","properties":{"a":{"type":"string"}},"minProperties":1}`:            false,
		`{"type":"object","properties":{"a":{"type":"string"}},"required":"a"}`:               false,
		`{"type":"object","properties":{"a":{"type":"string"}},"allOf":[{"required":["a"]}]}`: false,
	} {
		if got := compileFlat([]byte(schema)) != nil; got != flat {
			t.Errorf("%s: flat %v, want %v", schema, got, flat)
		}
	}
}

// What the flat check vouches for, the full validator accepts; what it
// does not, the full validator judges (and may still accept).
func TestFlatSchemaVouches(t *testing.T) {
	t.Parallel()
	schema := `{"type":"object","properties":{"s":{"type":"string"},"i":{"type":"integer"},"n":{"type":"number"},"b":{"type":"boolean"}},"required":["s"]}`
	a, err := newArgSchema([]byte(schema))
	if err != nil || a.flat == nil {
		t.Fatalf("%v, flat %v", err, a.flat)
	}
	for args, vouched := range map[string]bool{
		`{"s":"x"}`:                              true,
		` {"s":"x","i":-12,"n":1.5,"b":false} `:  true,
		`{"\u0073":"x"}`:                         true, // the key decoded
		`{"s":"x","i":123456789012345}`:          true,
		`{}`:                                     false, // missing required
		``:                                       false,
		`{"s":1}`:                                false,
		`{"s":null}`:                             false,
		`{"s":"x","i":1.0}`:                      false, // the validator's to judge (it accepts)
		`{"s":"x","i":1234567890123456}`:         false, // too long to vouch for
		`{"s":"x","n":1e400}`:                    false, // does not decode
		`{"s":"x","n":1e2}`:                      false,
		`{"s":"x","b":"true"}`:                   false,
		`{"s":"x","z":1}`:                        false, // undeclared
		`{"s":"x","s":"y"}`:                      false, // a duplicate key
		`{"s":"x","i":[1]}`:                      false,
		`["s"]`:                                  false,
		`{"s":`:                                  false,
		`{"s":"x"} {}`:                           false,
		"{\"s\":\"\xff\"}":                       false, // not UTF-8
		"\v{\"s\":\"x\"}":                        false, // not JSON whitespace: the validator refuses it
		"{\"s\":\"x\"}\u00a0":                    false,
		"\t{\"s\":\"x\"}\r\n":                    true,
		`{"s":"x","n":-0.000000000000000000001}`: true,
	} {
		if got := a.flat.vouch([]byte(args)); got != vouched {
			t.Errorf("%s: vouched %v, want %v", args, got, vouched)
		}
		if a.flat.vouch([]byte(args)) && a.validate([]byte(args)) != nil {
			t.Errorf("%s: vouched for, refused by the validator: %v", args, a.validate([]byte(args)))
		}
	}
	// A violation is still refused, in the validator's words.
	if err := a.check([]byte(`{"s":1}`)); err == nil || !strings.Contains(err.Error(), `argument "s": has type`) {
		t.Errorf("a wrong type: %v", err)
	}
	if err := a.check([]byte(`{"s":"x","i":1.0}`)); err != nil {
		t.Errorf("1.0 for an integer, which the validator accepts: %v", err)
	}
}

// A schema the validator refuses whatever the instance (a draft it does
// not implement) is not checked by the flat check: calls stay refused.
func TestFlatSchemaOnlyWhereTheValidatorJudges(t *testing.T) {
	t.Parallel()
	for _, draft := range []string{"http://json-schema.org/draft-04/schema#", "https://json-schema.org/draft/2019-09/schema", "https://json-schema.org/draft/2020-12/schema#"} {
		schema := `{"$schema":"` + draft + `","type":"object","properties":{"a":{"type":"string"}}}`
		if compileFlat([]byte(schema)) == nil {
			t.Fatalf("%s: not flat in form", draft)
		}
		a, err := newArgSchema([]byte(schema))
		if err != nil {
			t.Fatal(err)
		}
		if a.flat != nil || a.check([]byte(`{"a":"x"}`)) == nil {
			t.Errorf("%s: the flat check stands in for a validator that refuses the schema", draft)
		}
	}
	for _, draft := range []string{"http://json-schema.org/draft-07/schema#", "https://json-schema.org/draft/2020-12/schema"} {
		a, err := newArgSchema([]byte(`{"$schema":"` + draft + `","type":"object","properties":{"a":{"type":"string"}},"required":["a"]}`))
		if err != nil || a.flat == nil {
			t.Errorf("%s: %v, flat %v", draft, err, a.flat)
		}
	}
}

// FuzzFlatSchemaAnySchema: for any schema and any arguments, what the
// flat check vouches for the validator accepts.
func FuzzFlatSchemaAnySchema(f *testing.F) {
	f.Add([]byte(`{"type":"object","properties":{"a":{"type":"string"}},"required":["a"]}`), []byte(`{"a":"x"}`))
	f.Add([]byte(`{"$schema":"http://json-schema.org/draft-04/schema#","type":"object","properties":{"a":{"type":"integer"}}}`), []byte(`{"a":1}`))
	f.Add([]byte(`{"type":"object","additionalProperties":false,"properties":{"n":{"type":"number","title":"n"}}}`), []byte(` {"n":-1.5} `))
	f.Fuzz(func(t *testing.T, schema, args []byte) {
		a, err := newArgSchema(schema)
		if err != nil || a.flat == nil {
			return
		}
		if a.flat.vouch(args) {
			if err := a.validate(args); err != nil {
				t.Fatalf("schema %s, arguments %q: vouched for, refused by the validator: %v", schema, args, err)
			}
		}
	})
}

// FuzzFlatSchemaNeverLooser builds a flat schema from spec (per byte: a
// property's type, whether it is required, and whether the schema says
// additionalProperties false) and checks that whatever arguments the flat
// check vouches for, the full validator accepts.
func FuzzFlatSchemaNeverLooser(f *testing.F) {
	f.Add([]byte{0x08, 0x01, 0x02, 0x13}, []byte(`{"a":"x","b":1,"c":2.5,"d":true}`))
	f.Add([]byte{0x09}, []byte(`{"a":12}`))
	f.Add([]byte{0x0a, 0x00}, []byte(`{"a":-0.5,"b":"\u00e9"}`))
	f.Add([]byte{0x10}, []byte(`{}`))
	f.Add([]byte{0x01}, []byte(`{"a":1e5}`))
	f.Fuzz(func(t *testing.T, spec, args []byte) {
		if len(spec) == 0 || len(spec) > 8 {
			return
		}
		names := []string{"a", "b", "c", "d", "e", "f", "g", "h"}
		types := []string{"string", "integer", "number", "boolean"}
		props := map[string]any{}
		var required []string
		closed := false
		for i, c := range spec {
			props[names[i]] = map[string]any{"type": types[c%4]}
			if c&0x08 != 0 {
				required = append(required, names[i])
			}
			closed = closed || c&0x10 != 0
		}
		s := map[string]any{"type": "object", "properties": props, "required": required}
		if closed {
			s["additionalProperties"] = false
		}
		schema, _ := json.Marshal(s)
		a, err := newArgSchema(schema)
		if err != nil {
			t.Fatal(err)
		}
		if a.flat == nil {
			t.Fatalf("%s: not flat", schema)
		}
		if a.flat.vouch(args) {
			if err := a.validate(args); err != nil {
				t.Fatalf("schema %s, arguments %q: vouched for, refused by the validator: %v", schema, args, err)
			}
		}
	})
}

func BenchmarkArgSchemaCheck(b *testing.B) {
	a, err := newArgSchema([]byte(`{"type":"object","properties":{"path":{"type":"string","description":"where"},"count":{"type":"integer"}},"required":["path"],"additionalProperties":false}`))
	if err != nil || a.flat == nil {
		b.Fatal(err)
	}
	args := []byte(`{"path":"/srv/data/report.txt","count":3}`)
	b.Run("flat", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := a.check(args); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("validator", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := a.validate(args); err != nil {
				b.Fatal(err)
			}
		}
	})
}
