package screen

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"os"
)

// Record is one line of an evaluation corpus (../shared/corpora/*/
// dev.jsonl.gz): a text labelled attack or benign, with its category.
type Record struct {
	ID       string         `json:"id"`
	Text     string         `json:"text"`
	Label    string         `json:"label"` // "attack" or "benign"
	Category string         `json:"category"`
	Source   string         `json:"source"`
	Group    string         `json:"group"`
	Meta     map[string]any `json:"meta"`

	// Tool-definition corpora (mcp_tools) carry a tool instead of a text.
	Server      string          `json:"server,omitempty"`
	Tool        string          `json:"tool,omitempty"`
	Description string          `json:"description,omitempty"`
	InputSchema json.RawMessage `json:"input_schema,omitempty"`
}

// Attack reports whether the record is labelled attack.
func (r *Record) Attack() bool { return r.Label == "attack" }

// Corpus bounds: a line longer than this is refused, not truncated.
const maxRecordBytes = 8 << 20

// ForEachLine calls fn with each non-blank line of a text file, gzipped
// or not (detected by its magic), and its 1-based number. A line longer
// than maxLine bytes is an error, not truncated.
func ForEachLine(path string, maxLine int, fn func(n int, line []byte) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	br := bufio.NewReader(f)
	var r io.Reader = br
	if head, _ := br.Peek(2); bytes.Equal(head, []byte{0x1f, 0x8b}) {
		gz, err := gzip.NewReader(br)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		defer gz.Close()
		r = gz
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		if err := fn(n, line); err != nil {
			return fmt.Errorf("%s:%d: %w", path, n, err)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// ReadCorpus reads a JSONL corpus, gzipped or not. A malformed line is an
// error naming its line number; nothing is skipped silently.
func ReadCorpus(path string) ([]Record, error) {
	var out []Record
	err := ForEachLine(path, maxRecordBytes, func(_ int, line []byte) error {
		var rec Record
		if err := json.Unmarshal(line, &rec); err != nil {
			return err
		}
		if rec.Label != "attack" && rec.Label != "benign" {
			return fmt.Errorf("label %q is neither attack nor benign", rec.Label)
		}
		out = append(out, rec)
		return nil
	})
	return out, err
}
