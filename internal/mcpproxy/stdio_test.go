package mcpproxy

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/config"
)

type discardRecorder struct{}

func (discardRecorder) Record(context.Context, *audit.Event) error { return nil }
func (discardRecorder) Submit(*audit.Event) error                  { return nil }

// FuzzCheckedReader: whatever bytes an agent writes to wrap's stdin, the
// reader never panics and passes on only lines that pass CheckMessage.
func FuzzCheckedReader(f *testing.F) {
	f.Add([]byte("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n"))
	f.Add([]byte("garbage\n{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"evil\"}\n\n\r\n"))
	f.Add(bytes.Repeat([]byte("x"), 300))
	c, _ := config.Parse([]byte("version: 1\nlimits: {max_message_bytes: 256}\n"), ".")
	p := New(Options{Recorder: discardRecorder{}, Limits: c.Limits, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	lim := MessageLimits{MaxBytes: c.Limits.MaxMessageBytes, MaxDepth: c.Limits.MaxJSONDepth, MaxBatch: c.Limits.MaxBatch}
	f.Fuzz(func(t *testing.T, in []byte) {
		r := &checkedReader{p: p, src: bufio.NewReaderSize(bytes.NewReader(in), 64), out: io.Discard}
		out, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range bytes.Split(bytes.TrimSuffix(out, []byte("\n")), []byte("\n")) {
			if len(line) == 0 {
				continue
			}
			if _, err := CheckMessage(line, lim); err != nil {
				t.Fatalf("passed a line that fails CheckMessage: %q: %v", line, err)
			}
		}
	})
}
