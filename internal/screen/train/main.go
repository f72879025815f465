// Command train builds the prompt-injection classifier embedded in
// internal/screen (injection.model) from the dev splits of the corpora in
// ../shared/corpora. Training is deterministic: the same corpora give the
// same bytes (checked by TestEmbeddedModelReproducible).
//
//	go run ./internal/screen/train -corpora ../shared/corpora -out internal/screen/injection.model.gz
//	go run ./internal/screen/train -corpora ../shared/corpora -cv 5   # grouped cross-validation only
//
// The data recipe, the model card and the figures are in
// docs/model-card-injection.md.
package main

import (
	"crypto/sha256"
	"flag"
	"fmt"
	"hash/fnv"
	"log"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/portcullis-dev/portcullis/internal/screen"
)

func main() {
	corpora := flag.String("corpora", "../shared/corpora", "directory holding the corpora")
	out := flag.String("out", "", "write the model here")
	folds := flag.Int("cv", 0, "report grouped k-fold cross-validation (0: none)")
	flag.Float64Var(&opts.L2, "l2", 0, "L2 penalty (0: default)")
	flag.IntVar(&opts.Epochs, "epochs", 0, "epochs (0: default)")
	flag.Float64Var(&opts.Rate, "rate", 0, "learning rate (0: default)")
	flag.BoolVar(&showErrors, "errors", false, "with -cv, print the misjudged segments")
	flag.Parse()
	if err := run(*corpora, *out, *folds); err != nil {
		log.Fatal(err)
	}
}

var (
	showErrors bool
	opts       screen.TrainOptions
)

func run(dir, out string, folds int) error {
	docs, err := loadDocs(dir)
	if err != nil {
		return err
	}
	var cvThreshold float32
	if folds > 1 {
		cvThreshold = crossValidate(docs, folds)
	}
	if out == "" {
		return nil
	}
	m := screen.Train(examples(docs), opts)
	m.Threshold = cvThreshold
	if folds <= 1 {
		m.Threshold = threshold(m, docs)
	}
	raw, err := m.MarshalBinary()
	if err != nil {
		return err
	}
	b := screen.CompressModel(raw)
	if err := os.WriteFile(out, b, 0o644); err != nil {
		return err
	}
	fmt.Printf("wrote %s: threshold %.3f, sha256 %x\n", out, m.Threshold, sha256.Sum256(b))
	return nil
}

// doc is one training document: its text, whether it carries an
// injection, the byte span of the injected payload within it when known,
// and the fold key (payload for attacks, so a fold never sees the
// payload it is tested on).
type doc struct {
	text       string
	attack     bool
	start, end int // payload span; start < 0 when the whole text is payload
	key        string
	source     string
}

// loadDocs applies the data recipe: tool outputs with and without
// injected instructions from injecagent, agentdojo and bipia.
func loadDocs(dir string) ([]doc, error) {
	var docs []doc
	for _, src := range []string{"injecagent", "agentdojo", "bipia"} {
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
		d := doc{text: r.Text, attack: r.Attack(), start: -1, key: r.Group, source: src}
		if d.key == "" {
			d.key = r.ID
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
// once per label.
func examples(docs []doc) []screen.Example {
	seen := map[string]bool{}
	var out []screen.Example
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
		})
	}
	return out
}

// threshold picks the lowest score that keeps the false positives on the
// training tool outputs at or under 0.5% of documents, leaving room for
// the held-out data (the target is 2%).
func threshold(m *screen.Model, docs []doc) float32 {
	var benign []float32
	for _, d := range docs {
		if !d.attack {
			s, _, _ := m.MaxSegment(d.text)
			benign = append(benign, s)
		}
	}
	return quantileThreshold(benign, 0.005)
}

// quantileThreshold returns a threshold above all but frac of scores
// (and at least 0.5).
func quantileThreshold(scores []float32, frac float64) float32 {
	slices.Sort(scores)
	allowed := int(math.Floor(frac * float64(len(scores))))
	t := scores[len(scores)-1-allowed]
	t = float32(math.Nextafter32(t, 1))
	return max(t, 0.5)
}

// crossValidate trains k models, each without the documents whose key
// hashes to its fold, scores the left-out documents, and prints
// document-level detection per source at the thresholds that give 1% and
// 2% false positives over all left-out benign tool outputs. It returns the
// threshold for 1%, which the shipped model uses.
func crossValidate(docs []doc, k int) float32 {
	type scored struct {
		d     doc
		score float32
	}
	var all []scored
	for f := range k {
		var train, test []doc
		for _, d := range docs {
			h := fnv.New32a()
			h.Write([]byte(d.key))
			if int(h.Sum32()%uint32(k)) == f {
				test = append(test, d)
			} else {
				train = append(train, d)
			}
		}
		m := screen.Train(examples(train), opts)
		for _, d := range test {
			all = append(all, scored{d, float32(screen.InjectionScore(m, d.text))})
		}
	}
	var benign []float32
	for _, x := range all {
		if !x.d.attack {
			benign = append(benign, x.score)
		}
	}
	var chosen float32
	for _, fp := range []float64{0.01, 0.015, 0.02} {
		t := quantileThreshold(slices.Clone(benign), fp)
		if fp == 0.01 {
			chosen = t
		}
		fmt.Printf("threshold %.3f (%.1f%% false positives over all benign):\n", t, 100*fp)
		type tally struct{ tp, fn, fp, tn int }
		per := map[string]*tally{}
		for _, x := range all {
			t0 := per[x.d.source]
			if t0 == nil {
				t0 = &tally{}
				per[x.d.source] = t0
			}
			hit := x.score >= t
			if showErrors && fp == 0.01 && hit != x.d.attack {
				fmt.Printf("  %s attack=%v score=%.3f: %.160q\n", x.d.source, x.d.attack, x.score, payload(x.d))
			}
			switch {
			case x.d.attack && hit:
				t0.tp++
			case x.d.attack:
				t0.fn++
			case hit:
				t0.fp++
			default:
				t0.tn++
			}
		}
		keys := make([]string, 0, len(per))
		for k := range per {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, s := range keys {
			t := per[s]
			fmt.Printf("  %-10s detected %4d/%-4d (%5.1f%%)  false positives %3d/%-4d (%.2f%%)\n", s,
				t.tp, t.tp+t.fn, pct(t.tp, t.tp+t.fn), t.fp, t.fp+t.tn, pct(t.fp, t.fp+t.tn))
		}
	}
	return chosen
}

func payload(d doc) string {
	if d.attack && d.start >= 0 {
		return d.text[d.start:d.end]
	}
	return d.text
}

func pct(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return 100 * float64(a) / float64(b)
}
