package audit

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

// trickyStrings need every escape encoding/json makes.
var trickyStrings = []string{
	"plain", "", "quote\" back\\slash", "<script>&amp;</script>", "\b\f\n\r\t\x00\x1f\x7f",
	"line\u2028para\u2029", "bad utf-8 \xff\xfe end", "\xe2\x80", "ünïcødé ✓ 😀",
}

// leafPaths lists the paths (field indexes) of every field appendJSON
// encodes: the fields of Event, of its embedded Subject and of *Input.
func leafPaths(t reflect.Type, prefix []int) [][]int {
	var out [][]int
	for i := range t.NumField() {
		f := t.Field(i)
		path := append(append([]int(nil), prefix...), i)
		switch {
		case f.Anonymous:
			out = append(out, leafPaths(f.Type, path)...)
		case f.Type.Kind() == reflect.Pointer && f.Type.Elem().Kind() == reflect.Struct:
			out = append(out, leafPaths(f.Type.Elem(), path)...)
		default:
			out = append(out, path)
		}
	}
	return out
}

// fieldAt returns the field at path, allocating pointers on the way.
func fieldAt(v reflect.Value, path []int) reflect.Value {
	for _, i := range path {
		if v.Kind() == reflect.Pointer {
			if v.IsNil() {
				v.Set(reflect.New(v.Type().Elem()))
			}
			v = v.Elem()
		}
		v = v.Field(i)
	}
	return v
}

// setLeaf gives a field a value that is not its zero, built from s.
func setLeaf(t *testing.T, f reflect.Value, s string, n int64) {
	t.Helper()
	switch {
	case f.Type() == reflect.TypeFor[time.Time]():
		f.Set(reflect.ValueOf(time.Date(2026, 11, 30, 22, 1, 2, int(n%1e9), time.FixedZone("x", 5*3600+1800))))
	case f.Type() == reflect.TypeFor[json.RawMessage]():
		f.Set(reflect.ValueOf(json.RawMessage(` { "a" : ` + mustJSON(t, s) + ` , "b" : [ 1 , 2.5e3 , true , null ] } `)))
	case f.Kind() == reflect.String:
		f.SetString(s)
	case f.Kind() == reflect.Int64 || f.Kind() == reflect.Int:
		f.SetInt(n)
	case f.Kind() == reflect.Bool:
		f.SetBool(true)
	case f.Kind() == reflect.Slice && f.Type().Elem().Kind() == reflect.String:
		f.Set(reflect.ValueOf([]string{s, "second <&>"}).Convert(f.Type()))
	case f.Kind() == reflect.Map:
		f.Set(reflect.ValueOf(map[string]string{s: "untrusted", "b<": s, "a": ""}))
	case f.Kind() == reflect.Slice && f.Type().Elem().Kind() == reflect.Struct:
		el := reflect.New(f.Type().Elem()).Elem()
		for i := range el.NumField() {
			setLeaf(t, el.Field(i), s, n+int64(i))
		}
		f.Set(reflect.Append(reflect.MakeSlice(f.Type(), 0, 2), el, reflect.Zero(f.Type().Elem())))
	default:
		t.Fatalf("no test value for a field of type %s: teach setLeaf and appendJSON about it", f.Type())
	}
}

func mustJSON(t *testing.T, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func sameAsEncodingJSON(t *testing.T, e *Event) {
	t.Helper()
	want, werr := json.Marshal(e)
	got, gerr := e.appendJSON([]byte("prefix"))
	if (werr != nil) != (gerr != nil) {
		t.Fatalf("encoding/json error %v, appendJSON error %v", werr, gerr)
	}
	if werr == nil && string(got) != "prefix"+string(want) {
		t.Fatalf("appendJSON differs from encoding/json:\n got %s\nwant prefix%s", got, want)
	}
}

// appendJSON writes what json.Marshal writes: with every field set, with
// each field alone (the separators), with each tricky string in each
// field. A field added to Event, Subject or Input that appendJSON does
// not write fails here.
func TestEventJSONMatchesEncodingJSON(t *testing.T) {
	paths := leafPaths(reflect.TypeFor[Event](), nil)
	if len(paths) < 40 {
		t.Fatalf("only %d fields found", len(paths))
	}
	sameAsEncodingJSON(t, &Event{})
	sameAsEncodingJSON(t, &Event{Input: &Input{}})
	for i, s := range trickyStrings {
		var all Event
		for _, p := range paths {
			setLeaf(t, fieldAt(reflect.ValueOf(&all).Elem(), p), s, int64(i)*1_000_003+7)
		}
		sameAsEncodingJSON(t, &all)
		for _, p := range paths {
			var one Event
			setLeaf(t, fieldAt(reflect.ValueOf(&one).Elem(), p), s, -int64(i)-1)
			sameAsEncodingJSON(t, &one)
		}
	}
	// Errors where encoding/json has them: a year it cannot write,
	// arguments that are not JSON.
	sameAsEncodingJSON(t, &Event{Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)})
	sameAsEncodingJSON(t, &Event{Input: &Input{Arguments: json.RawMessage(`{"a":`)}})
}

// FuzzEventJSON holds appendJSON to json.Marshal on arbitrary strings,
// numbers and raw arguments.
func FuzzEventJSON(f *testing.F) {
	for _, s := range trickyStrings {
		f.Add(s, int64(len(s)), []byte(`{"k": "`+s+`"}`), true)
	}
	f.Add("", int64(-1), []byte(" [1, {\"x\" :\t\"\u2028\"}] "), false)
	f.Fuzz(func(t *testing.T, s string, n int64, args []byte, flag bool) {
		e := &Event{Seq: n, Time: time.Unix(0, n).UTC(), Type: Type(s), Outcome: Outcome(s),
			Subject: Subject{Agent: s, Actors: strings.Fields(s), SessionID: s},
			Target:  s, LatencyMicros: n, Labels: []string{s}, Detail: s,
			Memory: []MemoryRef{{ID: n, Scope: s, Key: s, State: s, SHA256: s}}}
		if flag {
			e.Input = &Input{Kind: s, Arguments: args, Redactions: int(n), Destruct: flag,
				Provenance: map[string]string{s: s, "z": s}, Findings: []string{s}}
		}
		sameAsEncodingJSON(t, e)
	})
}
