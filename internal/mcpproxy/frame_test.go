package mcpproxy

import (
	"bufio"
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/portcullis-dev/portcullis/internal/wire"
)

var testLimits = MessageLimits{MaxBytes: 1 << 16, MaxDepth: 8, MaxBatch: 4}

func TestCheckMessage(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		msg  string
		want error
		n    int
	}{
		{"request", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}`, nil, 1},
		{"notification", `{"jsonrpc":"2.0","method":"notifications/initialized"}`, nil, 1},
		{"response", `{"jsonrpc":"2.0","id":"s-1","result":{}}`, nil, 1},
		{"batch", `[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"ping"}]`, nil, 2},
		{"brackets in strings do not count", `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"a":"[[[[[[[[[[[[[[[[\"]]]"}}`, nil, 1},
		{"tasks", `{"jsonrpc":"2.0","id":1,"method":"tasks/get","params":{"taskId":"t"}}`, nil, 1},
		{"unknown method", `{"jsonrpc":"2.0","id":1,"method":"tools/delete_everything"}`, ErrUnknownMethod, 0},
		{"server-to-client method from agent", `{"jsonrpc":"2.0","id":1,"method":"sampling/createMessage"}`, ErrUnknownMethod, 0},
		{"no version", `{"id":1,"method":"ping"}`, ErrMalformed, 0},
		{"neither method nor id", `{"jsonrpc":"2.0"}`, ErrMalformed, 0},
		{"not json", `{"jsonrpc":"2.0",`, ErrMalformed, 0},
		{"duplicate key", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","name":"b"}}`, ErrMalformed, 0},
		{"case variant of a key", `{"jsonrpc":"2.0","id":1,"method":"ping","Method":"tools/call"}`, ErrMalformed, 0}, // encoding/json would read tools/call
		{"scalar", `42`, ErrMalformed, 0},
		{"empty batch", `[]`, ErrBatchTooBig, 0},
		{"batch too big", "[" + strings.Repeat(`{"jsonrpc":"2.0","id":1,"method":"ping"},`, 4) + `{"jsonrpc":"2.0","id":1,"method":"ping"}]`, ErrBatchTooBig, 0},
		{"bad member in batch", `[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"nope"}]`, ErrUnknownMethod, 0},
		{"too deep", `{"jsonrpc":"2.0","id":1,"method":"ping","params":` + strings.Repeat(`{"a":`, 10) + `1` + strings.Repeat(`}`, 10) + `}`, ErrTooDeep, 0},
		{"too large", `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"a":"` + strings.Repeat("x", 1<<16) + `"}}`, ErrTooLarge, 0},
	} {
		msgs, err := CheckMessage([]byte(tc.msg), testLimits)
		if !errors.Is(err, tc.want) || (tc.want == nil && len(msgs) != tc.n) {
			t.Errorf("%s: got %d messages, err %v; want %d, %v", tc.name, len(msgs), err, tc.n, tc.want)
		}
	}
}

// FuzzCheckMessage: no input may panic, and an accepted message must be
// within every limit and name only known methods.
func FuzzCheckMessage(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"a":[1,2,{"b":null}]}}}`,
		`[{"jsonrpc":"2.0","id":1,"method":"ping"}]`,
		`{"jsonrpc":"2.0","id":"x","result":{}}`,
		`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}`,
		`"\\"[[[`, `[[[[[[[[[]]]]]]]]]`, `{"a":"\u005b"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		msgs, err := CheckMessage(b, testLimits)
		if err != nil {
			peekIDMethod(b) // the refusal path reads what it can
			return
		}
		if int64(len(b)) > testLimits.MaxBytes || len(msgs) == 0 || len(msgs) > testLimits.MaxBatch {
			t.Fatalf("accepted %d bytes, %d messages", len(b), len(msgs))
		}
		for _, m := range msgs {
			if (m.Kind == wire.Request || m.Kind == wire.Notification) && !KnownAgentMethod(m.Method) {
				t.Fatalf("accepted unknown method %q", m.Method)
			}
		}
	})
}

// FuzzReadLine: whatever bytes an agent writes to wrap's stdin, the line
// reader never panics, never returns a line over the limit, and reports
// each oversize line.
func FuzzReadLine(f *testing.F) {
	f.Add([]byte("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n"))
	f.Add([]byte("garbage\n{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"evil\"}\n\n\r\n"))
	f.Add(bytes.Repeat([]byte("x"), 300))
	f.Fuzz(func(t *testing.T, in []byte) {
		src := bufio.NewReaderSize(bytes.NewReader(in), 64)
		for i := 0; i < 10000; i++ {
			line, err := readLine(src, 128, func() {})
			if len(line) > 128 {
				t.Fatalf("line of %d bytes", len(line))
			}
			if err != nil {
				return
			}
		}
	})
}
