package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

func TestParseKinds(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		kind Kind
		id   string
	}{
		{`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, Request, "1"},
		{`{"jsonrpc":"2.0","id":"a\"b","method":"ping","params":{}}`, Request, `"a\"b"`},
		{` {"method":"notifications/initialized","jsonrpc":"2.0"} `, Notification, ""},
		{`{"jsonrpc":"2.0","id":-3,"result":{}}`, Response, "-3"},
		{`{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"x"}}`, ErrorReply, ""},
		{`{"jsonrpc":"2.0","id":7,"error":{"code":1,"message":"x"}}`, ErrorReply, "7"},
	} {
		m, err := Parse([]byte(tc.in), 0)
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		if m.Kind != tc.kind || string(m.IDBytes()) != tc.id {
			t.Errorf("%s: kind %v id %q", tc.in, m.Kind, m.IDBytes())
		}
	}
}

func TestParseRefuses(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want error
	}{
		{`{"jsonrpc":"2.0","id":1,"method":"a","method":"b"}`, ErrDuplicate},
		// An error object its receiver cannot read as JSON-RPC's.
		{`{"jsonrpc":"2.0","id":1,"error":{"code":"notnum","message":1}}`, ErrEnvelope},
		{`{"jsonrpc":"2.0","id":1,"error":{"code":-32600.5,"message":"m"}}`, ErrEnvelope},
		{`{"jsonrpc":"2.0","id":1,"error":{"code":1}}`, ErrEnvelope},
		{`{"jsonrpc":"2.0","id":1,"error":{"message":"m"}}`, ErrEnvelope},
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","n\u0061me":"y"}}`, ErrDuplicate},
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{"a":{"b":1,"b":2}}}}`, ErrDuplicate},
		// Keys equal but for letter case: encoding/json matches a struct
		// field to either, the last one winning.
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"safe_read","Name":"delete_all"}}`, ErrDuplicate},
		{`{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"a"},"Method":"tools/call"}`, ErrDuplicate},
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{"path":"/tmp/a","PATH":"/etc/shadow"}}}`, ErrDuplicate},
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{},"argumentſ":{}}}`, ErrDuplicate},
		{"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\",\"params\":{\"kind\":1,\"\u212aind\":2}}", ErrDuplicate},
		{`{"jsonrpc":"2.0","id":1,"method":"x","params":{` + manyKeys(40) + `,"K7":0}}`, ErrDuplicate},
		{`{"jsonrpc":"2.0","id":1,"method":"x","params":{` + manyKeys(40) + `,"K7":0}}`, ErrDuplicate},
		{"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\",\"params\":{\"a\":\"\xff\"}}", ErrEncoding},
		{`{"jsonrpc":"2.0","id":1,"method":"x","params":{"a":"\ud800"}}`, ErrEncoding},
		{`{"jsonrpc":"2.0","id":1,"method":"x","params":{"a":"\udc00\ud800"}}`, ErrEncoding},
		{`{"jsonrpc":"2.0","id":1,"method":"x"} x`, ErrSyntax},
		{`{"jsonrpc":"2.0","id":1,"method":"x",}`, ErrSyntax},
		{`{"jsonrpc":"2.0","id":01,"method":"x"}`, ErrSyntax},
		{"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\",\"params\":{\"a\":\"\t\"}}", ErrSyntax},
		{`{"jsonrpc":"2.0","id":1,"method":"x","params":` + strings.Repeat("[", 70) + strings.Repeat("]", 70) + `}`, ErrDepth},
		{`{"jsonrpc":"1.0","id":1,"method":"x"}`, ErrEnvelope},
		{`{"id":1,"method":"x"}`, ErrEnvelope},
		{`{"jsonrpc":"2.0","id":1}`, ErrEnvelope},
		{`{"jsonrpc":"2.0","id":{},"method":"x"}`, ErrEnvelope},
		{`{"jsonrpc":"2.0","id":null,"method":"x"}`, ErrEnvelope},
		{`{"jsonrpc":"2.0","id":1,"method":"x","params":[1]}`, ErrEnvelope},
		{`{"jsonrpc":"2.0","id":1,"result":{},"error":{}}`, ErrEnvelope},
		{`{"jsonrpc":"2.0","method":"x","result":{}}`, ErrEnvelope},
		{`[{"jsonrpc":"2.0","id":1,"method":"x"}]`, ErrEnvelope},
		{`"just a string"`, ErrEnvelope},
	} {
		_, err := Parse([]byte(tc.in), 64)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.in, err, tc.want)
		}
	}
}

func TestViewAndEdits(t *testing.T) {
	t.Parallel()
	in := `{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"up__echo","arguments":{"text":"hi","n":[1,2]},"_meta":{"progressToken":"p1"}}}`
	m, err := Parse([]byte(in), 0)
	if err != nil {
		t.Fatal(err)
	}
	if m.Method != "tools/call" {
		t.Fatalf("method %q", m.Method)
	}
	name, _ := m.ParamString("name")
	if name != "up__echo" {
		t.Fatalf("name %q", name)
	}
	if got := string(m.Bytes(m.Param("arguments"))); got != `{"text":"hi","n":[1,2]}` {
		t.Fatalf("arguments %s", got)
	}
	if got := string(m.Bytes(m.Meta("progressToken"))); got != `"p1"` {
		t.Fatalf("progress token %s", got)
	}
	out := Apply(m.Raw,
		Replace(m.ID, []byte("42")),
		Replace(m.Param("name"), Quote("echo")),
		Replace(m.Meta("progressToken"), Quote("g-1")),
		InsertMember(m.Raw, m.ParamMeta(), "traceparent", Quote("00-x")),
	)
	want := `{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi","n":[1,2]},"_meta":{"traceparent":"00-x","progressToken":"g-1"}}}`
	if string(out) != want {
		t.Fatalf("edited:\n%s\nwant\n%s", out, want)
	}
	// Absent arguments stay absent: only the name changes.
	m2, _ := Parse([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a__b"}}`), 0)
	if got := string(Apply(m2.Raw, Replace(m2.Param("name"), Quote("b")))); got != `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"b"}}` {
		t.Fatal(got)
	}
}

// Several members inserted into one object, empty or not, make valid
// JSON in one edit.
func TestInsertMembers(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		`{}`:        `{"t":"x","c":{"a":1}}`,
		`{ }`:       `{"t":"x","c":{"a":1} }`,
		`{"p":1}`:   `{"t":"x","c":{"a":1},"p":1}`,
		`{ "p":1 }`: `{"t":"x","c":{"a":1}, "p":1 }`,
	} {
		b := []byte(in)
		add := AppendMember(AppendMember(nil, "t", Quote("x")), "c", []byte(`{"a":1}`))
		got := Apply(b, InsertMembers(b, Span{0, len(b)}, add))
		if string(got) != want || Valid(got, 8) != nil {
			t.Errorf("%s: %s, want %s", in, got, want)
		}
	}
}

func TestRemoveMember(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		`{"a":1,"b":2,"c":3}`: `{"a":1,"c":3}`,
		`{"a":1, "b":2}`:      `{"a":1}`,
		`{"b":2,"a":1}`:       `{"a":1}`,
		`{"b":2}`:             `{}`,
	} {
		b := []byte(in)
		obj := Span{0, len(b)}
		var e Edit
		Members(b, obj, func(k, v Span) bool {
			if KeyIs(b, k, "b") {
				e = RemoveMember(b, obj, k, v)
			}
			return true
		})
		if got := string(Apply(b, e)); got != want {
			t.Errorf("%s: %s, want %s", in, got, want)
		}
	}
}

func TestStringsWalk(t *testing.T) {
	t.Parallel()
	b := []byte(`{"content":[{"type":"text","text":"a\nb"},{"type":"image","data":"AAA"}],"structuredContent":{"k":["x",{"y":"z"}],"n":1}}`)
	var got []string
	Strings(b, Span{0, len(b)}, func(key string, obj, sp Span) {
		s, _ := String(b, sp)
		typ, _ := Lookup(b, obj, "type")
		t, _ := String(b, typ)
		got = append(got, key+"="+s+"("+t+")")
	})
	want := "type=text(text)|text=a\nb(text)|type=image(image)|data=AAA(image)|=x()|y=z()"
	if strings.Join(got, "|") != want {
		t.Fatalf("got %q", strings.Join(got, "|"))
	}
}

func TestAppendString(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"", "plain", "quote\" back\\ nl\n tab\t ctl\x01", "é ü 😀", "\u2028"} {
		var back string
		if err := json.Unmarshal(AppendString(nil, s), &back); err != nil || back != s {
			t.Errorf("%q: %q %v", s, back, err)
		}
	}
	if got := string(AppendString(nil, "a\xffb")); got != `"a\ufffdb"` {
		t.Errorf("invalid UTF-8: %s", got)
	}
}

func TestBuilders(t *testing.T) {
	t.Parallel()
	for _, b := range [][]byte{
		NewRequest([]byte("1"), "ping", nil),
		NewNotification("notifications/progress", []byte(`{"progress":1}`)),
		NewResponse([]byte(`"x"`), []byte(`{}`)),
		NewError(nil, CodeParseError, "bad \"json\"", nil),
		NewError([]byte("3"), -32030, "denied", []byte(`{"reason":"no_permit"}`)),
	} {
		if _, err := Parse(b, 0); err != nil {
			t.Errorf("%s: %v", b, err)
		}
	}
}

func TestEventReader(t *testing.T) {
	t.Parallel()
	in := ": comment\r\nid: 1\r\nretry: 500\r\ndata:\r\n\r\nevent: message\ndata: {\"a\":\ndata: 1}\n\nid: 3\ndata: x"
	r := NewEventReader(strings.NewReader(in), 0)
	ev, err := r.Next()
	if err != nil || ev.ID != "1" || ev.Retry != 500 || len(ev.Data) != 0 {
		t.Fatalf("priming: %+v %v", ev, err)
	}
	ev, err = r.Next()
	if err != nil || string(ev.Data) != "{\"a\":\n1}" || ev.Type != "message" {
		t.Fatalf("multi-line: %+v %v", ev, err)
	}
	ev, err = r.Next()
	if err != nil || ev.ID != "3" || string(ev.Data) != "x" {
		t.Fatalf("cut short: %+v %v", ev, err)
	}
	if _, err = r.Next(); err != io.EOF {
		t.Fatalf("end: %v", err)
	}
	big := "data: " + strings.Repeat("x", 100) + "\n\n"
	if _, err := NewEventReader(strings.NewReader(big), 50).Next(); !errors.Is(err, ErrEventTooLarge) {
		t.Fatalf("oversize: %v", err)
	}
}

// Lines longer than the read buffer, and events read one after another:
// each event's data, id and type are its own (not the reader's buffers,
// which the next line reuses).
func TestEventReaderLongLinesKeepTheirData(t *testing.T) {
	t.Parallel()
	var in strings.Builder
	var want []string
	for i, n := range []int{10, 5000, 4095, 4096, 4097, 12000, 3, 70000} {
		d := strings.Repeat(string(rune('a'+i)), n)
		want = append(want, d)
		fmt.Fprintf(&in, "id: %d\r\nevent: e%d\r\ndata: %s\r\n\r\n", i, i, d)
	}
	r := NewEventReader(strings.NewReader(in.String()), 0)
	defer r.Release()
	var got []Event
	for {
		ev, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ev)
	}
	if len(got) != len(want) {
		t.Fatalf("%d events, want %d", len(got), len(want))
	}
	for i, ev := range got {
		if string(ev.Data) != want[i] || ev.ID != fmt.Sprint(i) || ev.Type != fmt.Sprint("e", i) {
			t.Errorf("event %d: id %q type %q, %d bytes of data (want %d)", i, ev.ID, ev.Type, len(ev.Data), len(want[i]))
		}
	}
	// A long line over the bound, with the bound above the read buffer.
	big := "data: " + strings.Repeat("x", 9000) + "\n\n"
	if _, err := NewEventReader(strings.NewReader(big), 8000).Next(); !errors.Is(err, ErrEventTooLarge) {
		t.Fatalf("oversize long line: %v", err)
	}
	// Exactly at the bound: accepted, two lines included.
	at := "data: " + strings.Repeat("x", 50) + "\ndata: " + strings.Repeat("y", 49) + "\n\n"
	if ev, err := NewEventReader(strings.NewReader(at), 100).Next(); err != nil || len(ev.Data) != 100 {
		t.Fatalf("at the bound: %d %v", len(ev.Data), err)
	}
}

func BenchmarkEventReader4K(b *testing.B) {
	text := strings.Repeat("The quick brown fox jumps over the lazy dog. ", 95)
	ev := AppendEvent(nil, "", []byte(`{"jsonrpc":"2.0","id":12,"result":{"content":[{"type":"text","text":`+string(Quote(text))+`}]}}`))
	b.ReportAllocs()
	b.SetBytes(int64(len(ev)))
	for b.Loop() {
		r := NewEventReader(bytes.NewReader(ev), 0)
		if _, err := r.Next(); err != nil {
			b.Fatal(err)
		}
		r.Release()
	}
}

func TestAppendEventRoundTrip(t *testing.T) {
	t.Parallel()
	for _, data := range []string{`{"a":1}`, "{\n \"a\": 1\r\n}", ""} {
		r := NewEventReader(bytes.NewReader(AppendEvent(nil, "7", []byte(data))), 0)
		ev, err := r.Next()
		want := strings.ReplaceAll(data, "\r\n", "\n")
		if err != nil || string(ev.Data) != want || ev.ID != "7" {
			t.Errorf("%q: %+v %v", data, ev, err)
		}
	}
}

// FuzzParse checks Parse against encoding/json: whatever Parse accepts,
// encoding/json accepts and reads the same method, id and params; and
// whatever encoding/json accepts as a JSON-RPC object, Parse accepts
// unless it is stricter on purpose (duplicates, encoding, depth).
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"x":[1,2.5e3,"\u00e9"]}}}`,
		`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":0.5}}`,
		`{"jsonrpc":"2.0","id":"x","result":{"content":[{"type":"text","text":"\ud83d\ude00"}]}}`,
		`{"jsonrpc":"2.0","id":1,"method":"a","params":{"a":1,"A":2}}`,
		`{"jsonrpc":"2.0","id":1,"method":"a","params":{"name":"x","Name":"y"}}`,
		`{"jsonrpc":"2.0","id":1,"Method":"a","params":{"argumentſ":{}}}`,
		`{"jsonrpc":"2.0","id":1,"method":"a","params":{"a":1,"a":2}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Parse(b, 32)
		var generic map[string]json.RawMessage
		stdErr := json.Unmarshal(b, &generic)
		if err == nil {
			if stdErr != nil {
				t.Fatalf("accepted what encoding/json refuses (%v): %q", stdErr, b)
			}
			if !utf8.Valid(b) {
				t.Fatalf("accepted invalid UTF-8: %q", b)
			}
			var method string
			if raw, ok := generic["method"]; ok {
				json.Unmarshal(raw, &method)
			}
			if method != m.Method {
				t.Fatalf("method %q, encoding/json %q", m.Method, method)
			}
			if raw, ok := generic["params"]; ok && !bytes.Equal(raw, m.Bytes(m.Params)) {
				t.Fatalf("params differ")
			}
			// A Go server decoding into structs matches keys
			// case-insensitively: it must read what the gateway read.
			var folded struct {
				Method string
				Params struct {
					Name      json.RawMessage
					Arguments json.RawMessage
				}
			}
			if json.Unmarshal(b, &folded) == nil && folded.Method != m.Method {
				t.Fatalf("method %q, encoding/json into a struct %q", m.Method, folded.Method)
			}
			if len(folded.Params.Name) > 0 && !bytes.Equal(folded.Params.Name, m.Bytes(m.Param("name"))) {
				t.Fatalf("name %s, encoding/json into a struct %s", m.Bytes(m.Param("name")), folded.Params.Name)
			}
			if len(folded.Params.Arguments) > 0 && !bytes.Equal(folded.Params.Arguments, m.Bytes(m.Param("arguments"))) {
				t.Fatalf("arguments differ from encoding/json's into a struct")
			}
			if !m.Params.Empty() {
				var params map[string]json.RawMessage
				json.Unmarshal(m.Bytes(m.Params), &params)
				if raw, ok := params["name"]; ok && !m.Param("name").Empty() && !bytes.Equal(raw, m.Bytes(m.Param("name"))) {
					t.Fatalf("name differs")
				}
			}
			return
		}
		if stdErr == nil && utf8.Valid(b) && !errors.Is(err, ErrDuplicate) && !errors.Is(err, ErrKeyCase) && !errors.Is(err, ErrEncoding) &&
			!errors.Is(err, ErrDepth) && !errors.Is(err, ErrEnvelope) {
			t.Fatalf("refused what encoding/json accepts: %v: %q", err, b)
		}
	})
}

// FuzzReaders runs the lookups and walkers on whatever Valid accepts.
func FuzzReaders(f *testing.F) {
	f.Add([]byte(`{"a":[1,{"b":"c\"d"}],"e":{"f":null}}`))
	f.Add([]byte(`[true,false,"x",{"":""}]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if Valid(b, 64) != nil {
			return
		}
		start := skipWS(b, 0)
		sp := Span{start, skip(b, start)}
		var v any
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("valid but encoding/json refuses: %v", err)
		}
		n := 0
		Strings(b, sp, func(_ string, _, s Span) {
			if _, ok := String(b, s); !ok {
				t.Fatal("string span is not a string")
			}
			n++
		})
		if want := countStrings(v); n != want {
			t.Fatalf("walked %d strings, want %d", n, want)
		}
		Members(b, sp, func(k, v Span) bool {
			key, _ := String(b, k)
			if got, ok := Lookup(b, sp, key); !ok || got != v {
				t.Fatalf("lookup %q", key)
			}
			return true
		})
	})
}

func countStrings(v any) int {
	switch v := v.(type) {
	case string:
		return 1
	case []any:
		n := 0
		for _, e := range v {
			n += countStrings(e)
		}
		return n
	case map[string]any:
		n := 0
		for _, e := range v {
			n += countStrings(e)
		}
		return n
	}
	return 0
}

// FuzzEventReader: no input crashes the reader or exceeds its bound.
func FuzzEventReader(f *testing.F) {
	f.Add([]byte("id: 1\ndata: x\n\n"))
	f.Add([]byte("data: a\r\ndata: b\r\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := NewEventReader(bytes.NewReader(b), 256)
		for i := 0; i < 1000; i++ {
			ev, err := r.Next()
			if err != nil {
				return
			}
			if len(ev.Data) > 256 {
				t.Fatal("event over the bound")
			}
		}
	})
}

func BenchmarkParseCall(b *testing.B) {
	msg := []byte(`{"jsonrpc":"2.0","id":12,"method":"tools/call","params":{"name":"up__echo","arguments":{"text":"hello world","count":3},"_meta":{"progressToken":"p"}}}`)
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		if _, err := Parse(msg, 64); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseResult4K(b *testing.B) {
	text := strings.Repeat("The quick brown fox jumps over the lazy dog. ", 90)
	msg := []byte(`{"jsonrpc":"2.0","id":12,"result":{"content":[{"type":"text","text":` + string(Quote(text)) + `}],"isError":false}}`)
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		if _, err := Parse(msg, 64); err != nil {
			b.Fatal(err)
		}
	}
}

// manyKeys is n members "k0":0, "k1":0, ... (past dupLinear: the set).
func manyKeys(n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%q:0", fmt.Sprintf("k%d", i))
	}
	return b.String()
}

// A response's content may hold keys equal but for letter case (no
// decision reads it); its recorded objects may not, nor may a request
// anywhere.
func TestCaseVariantsInResponses(t *testing.T) {
	t.Parallel()
	if _, err := Parse([]byte(`{"jsonrpc":"2.0","id":1,"result":{"structuredContent":{"env":{"PATH":"/bin","path":"/usr/bin"}}}}`), 32); err != nil {
		t.Errorf("an environment listing in a result: %v", err)
	}
	for _, in := range []string{
		`{"jsonrpc":"2.0","id":1,"result":{"content":[],"Content":[]}}`,
		`{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":{"PATH":"/bin","path":"/usr/bin"}}}`,
		`{"jsonrpc":"2.0","id":1,"method":"sampling/createMessage","params":{"messages":[{"Role":"user","role":"assistant"}]}}`,
	} {
		if _, err := Parse([]byte(in), 32); !errors.Is(err, ErrDuplicate) {
			t.Errorf("%s: %v", in, err)
		}
	}
	// Many case variants of one key (past the linear check) are found
	// through sets, and an exact repeat among them is still refused.
	var variants []string
	for i := range 64 {
		k := []byte("abcdef")
		for j := range k {
			if i&(1<<j) != 0 {
				k[j] -= 'a' - 'A'
			}
		}
		variants = append(variants, `"`+string(k)+`":0`)
	}
	content := `{"jsonrpc":"2.0","id":1,"result":{"structuredContent":{` + strings.Join(variants, ",")
	if _, err := Parse([]byte(content+`}}}`), 32); err != nil {
		t.Errorf("64 case variants in a result's content: %v", err)
	}
	if _, err := Parse([]byte(content+`,"aBcDeF":1}}}`), 32); !errors.Is(err, ErrDuplicate) {
		t.Errorf("an exact repeat among case variants: %v", err)
	}
	if err := Valid([]byte(`{"a":{"b":1,"B":2}}`), 32); !errors.Is(err, ErrDuplicate) {
		t.Errorf("Valid (arguments) took a case variant: %v", err)
	}
}

// TestFoldKeyIsEqualFold checks that keys share a representative exactly
// when bytes.EqualFold holds, over every rune that folds with another and
// its neighbours, alone and after an ASCII prefix.
func TestFoldKeyIsEqualFold(t *testing.T) {
	t.Parallel()
	var runes []rune
	for r := rune(0); r <= 0x1FFFF; r++ {
		if unicode.SimpleFold(r) != r {
			runes = append(runes, r)
		}
	}
	runes = append(runes, 'a', '0', 0x80, 0xFFFD)
	for i, r := range runes {
		// Each rune against the members of its orbit and a few others.
		others := []rune{unicode.SimpleFold(r), unicode.SimpleFold(unicode.SimpleFold(r)), runes[(i+1)%len(runes)], runes[(i*7919)%len(runes)]}
		for _, o := range others {
			a, b := []byte("x"+string(r)), []byte("X"+string(o))
			if got, want := FoldKey(a) == FoldKey(b), bytes.EqualFold(a, b); got != want {
				t.Fatalf("%q %q: foldKey equal %v, EqualFold %v", a, b, got, want)
			}
		}
	}
}

// TestAcceptedKeysReadAlikeCaseInsensitively is the differential the case
// rule closes: whatever Parse accepts, a Go server decoding into structs
// (encoding/json, case-insensitive keys) reads the same method, name and
// arguments as the gateway.
func TestAcceptedKeysReadAlikeCaseInsensitively(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"NAME":"a","arguments":{"x":1}}}`,
		`{"jsonrpc":"2.0","id":1,"METHOD":"tools/call","params":{"name":"a"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","Arguments":{"x":1}}}`,
	} {
		m, err := Parse([]byte(in), 32)
		if errors.Is(err, ErrKeyCase) {
			continue // refused: nothing to disagree about
		}
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		var v struct {
			Method string
			Params struct {
				Name      string
				Arguments json.RawMessage
			}
		}
		if err := json.Unmarshal([]byte(in), &v); err != nil {
			t.Fatal(err)
		}
		name, _ := m.ParamString("name")
		args := m.Param("arguments")
		if v.Method != m.Method || v.Params.Name != name || string(v.Params.Arguments) != string(m.Bytes(args)) {
			t.Errorf("%s: gateway read %q %q %s, encoding/json %q %q %s", in, m.Method, name, m.Bytes(args), v.Method, v.Params.Name, v.Params.Arguments)
		}
	}
}
