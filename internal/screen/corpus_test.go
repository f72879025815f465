package screen

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckShape(t *testing.T) {
	t.Parallel()
	text := Record{ID: "a", Text: "some text", Label: "benign"}
	tool := Record{ID: "b", Tool: "read_file", Description: "Read a file.", Label: "benign"}
	neither := Record{ID: "c", Label: "attack"}
	for _, tc := range []struct {
		name    string
		recs    []Record
		want    string
		wantGot string // a *ShapeError with this Got
		errHas  string // or another error containing this
	}{
		{"texts", []Record{text, text}, ShapeText, "", ""},
		{"tools", []Record{tool}, ShapeTool, "", ""},
		{"empty", nil, ShapeText, "", "no records"},
		{"tools as texts", []Record{tool, tool}, ShapeText, ShapeTool, ""},
		{"texts as tools", []Record{text}, ShapeTool, ShapeText, ""},
		{"neither", []Record{neither}, ShapeText, "", "neither a text nor a tool"},
		{"stray record", []Record{text, neither}, ShapeText, "", `record 2 (id "c") has no text`},
	} {
		err := CheckShape(tc.recs, tc.want)
		var se *ShapeError
		switch {
		case tc.wantGot == "" && tc.errHas == "":
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
		case tc.wantGot != "":
			if !errors.As(err, &se) || se.Got != tc.wantGot || se.Want != tc.want {
				t.Errorf("%s: %v, want a shape error with got %q", tc.name, err, tc.wantGot)
			}
		default:
			if err == nil || !strings.Contains(err.Error(), tc.errHas) {
				t.Errorf("%s: %v, want %q", tc.name, err, tc.errHas)
			}
		}
	}
}

// devCorpusTexts returns the texts and tool descriptions of the dev
// corpora's records whose index is a multiple of every (none, logged,
// where the corpora are not there).
func devCorpusTexts(t *testing.T, every int) []string {
	t.Helper()
	paths, _ := filepath.Glob("../../../shared/corpora/*/dev.jsonl.gz")
	if len(paths) == 0 {
		t.Log("corpora not available: the built-in texts only")
	}
	var texts []string
	for _, p := range paths {
		recs, err := ReadCorpus(p)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		for i, r := range recs {
			if i%every == 0 {
				texts = append(texts, r.Text, r.Description)
			}
		}
	}
	return texts
}
