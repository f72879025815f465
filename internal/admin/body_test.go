package admin

import (
	"net/http"
	"strings"
	"testing"
)

type taskBody struct {
	Agent      string   `json:"agent"`
	Tools      []string `json:"tools"`
	TTLSeconds int      `json:"ttl_seconds"`
}

func decode(s string) error {
	r, _ := http.NewRequest("POST", "/v1/tasks", strings.NewReader(s))
	var v taskBody
	return decodeBody(r, &v)
}

// TestBodyErrorsSpeakOfTheRequest: no Go type names, a field path, what
// was expected and what came.
func TestBodyErrorsSpeakOfTheRequest(t *testing.T) {
	for in, want := range map[string]string{
		`{"agent":"a","tools":"fs__read"}`: "body: tools: want an array, got string",
		`{"ttl_seconds":"60"}`:             "body: ttl_seconds: want an integer, got string",
		`{"agnet":"a"}`:                    `body: unknown field "agnet"`,
		`{"agent":`:                        "body: the JSON ends early",
		`{"agent":"a"} {"agent":"b"}`:      "body: more than one JSON value",
		`["a"]`:                            "body: want a JSON object, got array",
		``:                                 "body: empty, want a JSON object",
		`{"agent":x}`:                      "body: not valid JSON (at byte 10)",
	} {
		err := decode(in)
		if err == nil || err.Error() != want {
			t.Errorf("%q: %v, want %q", in, err, want)
		}
		if err != nil && (strings.Contains(err.Error(), "Go struct") || strings.Contains(err.Error(), "[]string")) {
			t.Errorf("%q: speaks Go: %v", in, err)
		}
	}
	if err := decode(`{"agent":"a","tools":["fs__read"],"ttl_seconds":60}`); err != nil {
		t.Errorf("a good body: %v", err)
	}
}

func FuzzDecodeBody(f *testing.F) {
	f.Add(`{"agent":"a","tools":["x"],"ttl_seconds":1}`)
	f.Add(`{"tools":{"a":1}}`)
	f.Fuzz(func(t *testing.T, s string) {
		if err := decode(s); err != nil && (!strings.HasPrefix(err.Error(), "body: ") || strings.Contains(err.Error(), "Go ")) {
			t.Fatalf("%q: %v", s, err)
		}
	})
}

func TestBodyRefusesTrailingData(t *testing.T) {
	for _, in := range []string{`{"agent":"a"}]`, `{"agent":"a"}}`, `{"agent":"a"} x`} {
		if err := decode(in); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}
