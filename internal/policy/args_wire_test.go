package policy

import (
	"testing"

	"github.com/portcullis-dev/portcullis/internal/wire"
)

// sameArguments checks that WireArguments reads args (inside a tools/call
// message the wire parser accepted) exactly as Arguments does.
func sameArguments(t *testing.T, args string) {
	t.Helper()
	msg := []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":` + args + `}}`)
	m, err := wire.Parse(msg, 64)
	if err != nil {
		return // not a message the gateway would read
	}
	sp := m.Param("arguments")
	want, werr := Arguments(m.Bytes(sp))
	got, gerr := WireArguments(m.Raw, sp)
	if (werr == nil) != (gerr == nil) {
		t.Fatalf("%s: Arguments err %v, WireArguments err %v", args, werr, gerr)
	}
	if werr == nil && !got.Equal(want) {
		t.Fatalf("%s:\nWireArguments %s\nArguments     %s", args, got, want)
	}
}

func TestWireArgumentsAsArguments(t *testing.T) {
	t.Parallel()
	deep := `{"a":`
	for range 40 {
		deep += `{"a":`
	}
	deep += `1`
	for range 41 {
		deep += `}`
	}
	for _, args := range []string{
		`{}`, `null`, `{"a":null}`, `{"s":"x\u00e9\n","b":true,"f":false}`,
		`{"n":1,"big":9223372036854775807,"over":9223372036854775808,"neg":-3,"f":2.0,"g":2.5,"e":1e3,"huge":1e400,"exp":1E-2}`,
		`{"arr":[1,null,"a",[2,[3]],{"x":null,"y":[]}],"empty":[]}`,
		`{"obj":{"nested":{"k":"v"}},"k\"ey":"q","":0}`,
		`[1,2]`, `"text"`, `3`, `true`,
		deep,
	} {
		sameArguments(t, args)
	}
}

func FuzzWireArguments(f *testing.F) {
	for _, s := range []string{`{"a":1}`, `{"a":[1,null,{"b":"c"}],"d":2.5e10}`, `{"x":-0.0,"y":"\ud83d\ude00"}`, `null`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, args string) {
		sameArguments(t, args)
	})
}
