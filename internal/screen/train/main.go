// Command train builds the prompt-injection classifier embedded in
// internal/screen (injection.model.gz) from the dev splits of the corpora
// in ../shared/corpora. It validates the recipe by leaving each source
// out in turn, fits the calibration and the threshold on those held-out
// scores, reports the operating curve, and trains the shipped model on
// every source. Training is deterministic: the same corpora give the
// same bytes (checked by TestEmbeddedModelReproducible).
//
//	go run ./internal/screen/train -corpora ../shared/corpora -out internal/screen/injection.model.gz
//	go run ./internal/screen/train -corpora ../shared/corpora -cv 5   # also grouped k-fold, no model written
//
// The data recipe, the model card and the figures are in
// docs/model-card-injection.md.
package main

import (
	"crypto/sha256"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"slices"

	"github.com/portcullis-dev/portcullis/internal/screen"
)

func main() {
	corpora := flag.String("corpora", "../shared/corpora", "directory holding the corpora")
	out := flag.String("out", "", "write the model here")
	folds := flag.Int("cv", 0, "also report grouped k-fold cross-validation (0: none)")
	flag.Float64Var(&opts.L2, "l2", 0, "L2 penalty of word features (0: default)")
	flag.Float64Var(&opts.L2Form, "l2form", 0, "L2 penalty of form features (0: default)")
	flag.IntVar(&opts.Epochs, "epochs", 0, "epochs (0: default)")
	flag.Float64Var(&opts.Rate, "rate", 0, "learning rate (0: default)")
	flag.BoolVar(&showErrors, "errors", false, "print the documents misjudged when left out")
	flag.Parse()
	if err := run(*corpora, *out, *folds); err != nil {
		log.Fatal(err)
	}
}

var (
	showErrors bool
	opts       screen.TrainOptions
)

// targetFP is the shipped threshold's false-positive rate on benign
// tool outputs of sources the model did not see, averaged over sources.
const targetFP = 0.01

func run(dir, out string, folds int) error {
	docs, err := loadDocs(dir)
	if err != nil {
		return err
	}
	w := os.Stdout
	fold, k := sourceFolds(docs)
	loso := outOfFold(docs, fold, k)
	cal := calibrate(loso)
	t := thresholdFor(loso, cal, targetFP)
	fmt.Fprintf(w, "calibration a=%.4f b=%.4f; threshold %.3f (%.1f%% of held-out benign outputs flagged, averaged over sources)\n\n",
		cal.CalA, cal.CalB, t, 100*meanFP(loso, cal, t))
	printHeldOut(w, "leave one source out (each source judged by a model trained on the others):", loso, cal, []float32{t, 0.9})
	printROC(w, "leave one source out:", loso, cal)
	fmt.Fprintln(w, "\noperating curve, leave one source out (benign tool outputs flagged):")
	curve := []float32{0.5, 0.6, 0.7, 0.8}
	for _, fp := range []float64{0.02, 0.01, 0.005} {
		curve = append(curve, thresholdFor(loso, cal, fp))
	}
	curve = append(curve, 0.9, 0.95, 0.99)
	slices.Sort(curve)
	curve = slices.Compact(curve)
	printCurve(w, loso, cal, curve)
	if showErrors {
		fmt.Fprintln(w, "\nmisjudged when left out:")
		printErrors(w, loso, cal, t)
	}
	if folds > 1 {
		cv := outOfFold(docs, groupedFolds(docs, folds), folds)
		fmt.Fprintln(w)
		printHeldOut(w, fmt.Sprintf("grouped %d-fold (no instruction, no document group in both train and test):", folds), cv, cal, []float32{t, 0.9})
		printROC(w, "grouped k-fold:", cv, cal)
	}
	m := screen.Train(examples(docs), opts)
	m.CalA, m.CalB, m.Threshold = cal.CalA, cal.CalB, t
	printOutOfDistribution(w, dir, m)
	if out == "" {
		return nil
	}
	raw, err := m.MarshalBinary()
	if err != nil {
		return err
	}
	b := screen.CompressModel(raw)
	if err := os.WriteFile(out, b, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nwrote %s: threshold %.3f, sha256 %x\n", out, m.Threshold, sha256.Sum256(b))
	return nil
}

// printOutOfDistribution reports the shipped model on corpora it is not
// trained on (prompts typed by users, not tool outputs), when present.
func printOutOfDistribution(w io.Writer, dir string, m *screen.Model) {
	fmt.Fprintln(w, "\nout of distribution (not trained on), the model trained on every source:")
	for _, src := range []string{"llm_guard_tests", "jailbreak_prompts"} {
		recs, err := screen.ReadCorpus(filepath.Join(dir, src, "dev.jsonl.gz"))
		if err != nil {
			continue
		}
		type count struct{ n, at, at9 int }
		per := map[string]*count{}
		var cats []string
		for _, r := range recs {
			if src == "llm_guard_tests" && r.Category != "prompt_injection" {
				continue
			}
			k := r.Label + " " + r.Category
			if per[k] == nil {
				per[k] = &count{}
				cats = append(cats, k)
			}
			s := screen.InjectionScore(m, screen.Normalize(r.Text).Text)
			c := per[k]
			c.n++
			if s >= float64(m.Threshold) {
				c.at++
			}
			if s >= 0.9 {
				c.at9++
			}
		}
		for _, k := range cats {
			c := per[k]
			fmt.Fprintf(w, "  %-18s %-40s flagged %4d/%-4d (%5.1f%%) at %.3f, %4d (%5.1f%%) at 0.9\n", src, k, c.at, c.n, pct(c.at, c.n), m.Threshold, c.at9, pct(c.at9, c.n))
		}
	}
}
