package main

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/portcullis-dev/portcullis/internal/screen"
)

// sources are the corpora whose dev splits hold tool outputs with and
// without planted instructions: the training data, and the units of
// leave-one-source-out validation.
var sources = []string{"injecagent", "agentdojo", "bipia"}

// doc is one training document: its text, whether it carries an
// injection, the byte span of the injected payload within it when known,
// the attacker's instruction (attacks) and the corpus' group (the record
// ID when there is none). Folds never split documents that share an
// instruction or a group.
type doc struct {
	text       string
	attack     bool
	start, end int // payload span; start < 0 when the whole text is payload
	key        string
	group      string
	source     string
}

// payload is the injected text of an attack, or the whole text.
func (d *doc) payload() string {
	if d.attack && d.start >= 0 {
		return d.text[d.start:d.end]
	}
	return d.text
}

// loadDocs applies the data recipe to each source's dev split.
func loadDocs(dir string) ([]doc, error) {
	var docs []doc
	for _, src := range sources {
		recs, err := screen.ReadCorpus(filepath.Join(dir, src, "dev.jsonl.gz"))
		if err != nil {
			return nil, err
		}
		docs = append(docs, recipe(src, recs)...)
	}
	return docs, nil
}

func recipe(src string, recs []screen.Record) []doc {
	// agentdojo: the payload is what differs between attacks on the same
	// document slot (their common prefix and suffix are the carrier).
	carriers := map[string][]string{}
	if src == "agentdojo" {
		for _, r := range recs {
			if strings.HasPrefix(r.Category, "tool_output_injection/") {
				carriers[r.Group] = append(carriers[r.Group], r.Text)
			}
		}
	}
	var out []doc
	for _, r := range recs {
		d := doc{text: r.Text, attack: r.Attack(), start: -1, group: r.Group, source: src}
		if d.group == "" {
			d.group = r.ID
		}
		switch {
		case !r.Attack():
			// Only tool outputs: user prompts are requests by nature, and
			// a request inside a tool output is what this model flags.
			if !strings.HasPrefix(r.Category, "benign_tool_") && !strings.HasPrefix(r.Category, "benign_context") {
				continue
			}
		case src == "injecagent":
			instr, _ := r.Meta["attacker_instruction"].(string)
			i := strings.Index(r.Text, instr)
			if instr == "" || i < 0 {
				continue
			}
			// The payload is the whole free-text field that carries the
			// instruction (the enhanced variant prefixes it).
			d.start, d.end = fieldStart(r.Text, i), i+len(instr)
			d.key = instr
		case src == "bipia":
			atk, _ := r.Meta["attack"].(string)
			i := strings.Index(r.Text, atk)
			if atk == "" || i < 0 {
				continue
			}
			d.start, d.end = i, i+len(atk)
			d.key = atk
		case src == "agentdojo" && r.Category == "injection_goal_raw":
			d.key, _ = r.Meta["goal"].(string)
		case src == "agentdojo":
			group := carriers[r.Group]
			if len(group) < 2 {
				continue
			}
			p, s := commonPrefix(group), commonSuffix(group)
			if p+s >= len(r.Text) {
				continue
			}
			d.start, d.end = p, len(r.Text)-s
			d.key, _ = r.Meta["goal"].(string)
		}
		out = append(out, d)
	}
	return out
}

// fieldStart returns the start of the JSON string holding position i (the
// byte after its opening quote), or i if there is none within 300 bytes.
func fieldStart(s string, i int) int {
	for j := i - 1; j >= 0 && i-j <= 300; j-- {
		if s[j] == '"' && (j == 0 || s[j-1] != '\\') {
			return j + 1
		}
	}
	return i
}

func commonPrefix(xs []string) int {
	n := len(xs[0])
	for _, x := range xs[1:] {
		n = min(n, len(x))
		for i := range n {
			if x[i] != xs[0][i] {
				n = i
				break
			}
		}
	}
	return n
}

func commonSuffix(xs []string) int {
	n := len(xs[0])
	for _, x := range xs[1:] {
		n = min(n, len(x))
		for i := 1; i <= n; i++ {
			if x[len(x)-i] != xs[0][len(xs[0])-i] {
				n = i - 1
				break
			}
		}
	}
	return n
}

// examples turns documents into labelled segments: a segment of an
// attack that lies mostly inside the payload is positive, one mostly
// outside it is carrier text and negative, one straddling is left out.
// Every segment of a benign tool output is negative. Duplicates are kept
// once per label. Each source's positives, and its negatives, weigh the
// same in total, so that the largest corpus does not set the boundary
// for all.
func examples(docs []doc) []screen.Example {
	seen := map[string]bool{}
	var out []screen.Example
	var from []string
	for _, d := range docs {
		screen.Segments(d.text, func(b, e int) {
			seg := d.text[b:e]
			pos := false
			if d.attack {
				if d.start < 0 {
					pos = true
				} else {
					in := max(0, min(e, d.end)-max(b, d.start))
					switch {
					case 2*in >= e-b:
						pos = true
					case in > 0:
						return
					}
				}
			}
			k := fmt.Sprint(pos, "\x00", seg)
			if seen[k] {
				return
			}
			seen[k] = true
			out = append(out, screen.Example{Text: seg, Positive: pos})
			from = append(from, d.source)
		})
	}
	// Weights average 1, as unweighted examples would.
	count := map[string]int{}
	for i, e := range out {
		count[fmt.Sprint(from[i], e.Positive)]++
	}
	share := float64(len(out)) / float64(len(count))
	for i := range out {
		out[i].Weight = share / float64(count[fmt.Sprint(from[i], out[i].Positive)])
	}
	return out
}
