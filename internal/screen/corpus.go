package screen

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
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

// Record shapes: what an evaluation reads from each record.
const (
	ShapeText = "text" // a text to screen (`eval screen`)
	ShapeTool = "tool" // a tool definition (`eval tools`)
)

// shapeProbe is how many leading records decide a corpus' shape: when
// none of them has the fields an evaluation reads, the corpus is of
// another kind rather than damaged.
const shapeProbe = 20

// ErrEmptyCorpus is returned by CheckShape for a corpus without records:
// an evaluation over nothing would report perfect rates.
var ErrEmptyCorpus = errors.New("corpus has no records")

// ShapeError is returned by CheckShape when a corpus' records are not of
// the shape wanted. Got is the shape the leading records have instead
// (ShapeText, ShapeTool, or "" for neither), so that the caller can name
// the evaluation that reads them.
type ShapeError struct {
	Want, Got string
}

func (e *ShapeError) Error() string {
	if e.Got == "" {
		return fmt.Sprintf("the records are not %s: the first has neither a text nor a tool", shapeName(e.Want))
	}
	return fmt.Sprintf("the records are %s, not %s", shapeName(e.Got), shapeName(e.Want))
}

func shapeName(shape string) string {
	if shape == ShapeTool {
		return "tool definitions (server, tool, description, input_schema)"
	}
	return "texts to screen (text, label, category)"
}

// Shape is ShapeText when the record has a text, ShapeTool when it names
// a tool, and "" otherwise.
func (r *Record) Shape() string {
	switch {
	case r.Text != "":
		return ShapeText
	case r.Tool != "":
		return ShapeTool
	}
	return ""
}

// CheckShape returns nil when recs are a corpus of the given shape: not
// empty, and every record of that shape. When none of the leading records
// has it, the error is a *ShapeError (a corpus of another kind); a stray
// record without it is an error naming the record.
func CheckShape(recs []Record, want string) error {
	if len(recs) == 0 {
		return ErrEmptyCorpus
	}
	probe := recs[:min(len(recs), shapeProbe)]
	if !slices.ContainsFunc(probe, func(r Record) bool { return r.Shape() == want }) {
		return &ShapeError{Want: want, Got: probe[0].Shape()}
	}
	for i := range recs {
		if recs[i].Shape() != want {
			return fmt.Errorf("record %d (id %q) has no %s", i+1, recs[i].ID, want)
		}
	}
	return nil
}
