package main

import (
	"hash/fnv"
	"math"
	"slices"

	"github.com/portcullis-dev/portcullis/internal/screen"
)

// judged is a document scored by a model trained without it: without its
// source (leave one source out) or without its fold (grouped k-fold).
type judged struct {
	d       *doc
	scored  bool      // the text has a segment the classifier judges
	margin  float32   // the best segment's margin
	pattern float64   // the best technique pattern score (0: none)
	segs    []float32 // margins of the segments judged in a benign document
	best    string    // the best segment (for -errors)
}

// outOfFold trains a model per fold without that fold's documents and
// judges them with it. fold[i] is document i's fold, in [0, k).
func outOfFold(docs []doc, fold []int, k int) []judged {
	out := make([]judged, len(docs))
	for f := range k {
		var train []doc
		var test []int
		for i := range docs {
			if fold[i] == f {
				test = append(test, i)
			} else {
				train = append(train, docs[i])
			}
		}
		if len(test) == 0 {
			continue
		}
		m := screen.Train(examples(train), opts)
		for _, i := range test {
			out[i] = judge(m, &docs[i])
		}
	}
	return out
}

// judge scores a document as the gateway would: normalised, the segments
// the gate points the classifier to, and the technique patterns.
func judge(m *screen.Model, d *doc) judged {
	j := judged{d: d}
	text := screen.Normalize(d.text).Text
	m.EachSegment(text, func(b, e int, z float32) {
		if !j.scored || z > j.margin {
			j.scored, j.margin = true, z
			if showErrors {
				j.best = text[b:e]
			}
		}
		if !d.attack {
			j.segs = append(j.segs, z)
		}
	})
	for _, f := range screen.InjectionPatterns(text) {
		j.pattern = max(j.pattern, f.Score)
	}
	return j
}

// score is the document's calibrated score under cal: the higher of the
// patterns and the classifier's best segment (screen.InjectionScore).
func (j *judged) score(cal *screen.Model) float64 {
	s := j.pattern
	if j.scored {
		s = max(s, float64(cal.Calibrate(j.margin)))
	}
	return s
}

// sourceFolds puts each source in a fold of its own.
func sourceFolds(docs []doc) ([]int, int) {
	fold := make([]int, len(docs))
	for i, d := range docs {
		fold[i] = slices.Index(sources, d.source)
	}
	return fold, len(sources)
}

// groupedFolds assigns documents to k folds so that documents sharing a
// group or an attacker instruction are in the same fold: the connected
// components of that relation, each placed by a hash of its root.
func groupedFolds(docs []doc, k int) []int {
	parent := map[string]string{}
	var find func(string) string
	find = func(x string) string {
		p, ok := parent[x]
		if !ok {
			parent[x] = x
			return x
		}
		if p == x {
			return x
		}
		r := find(p)
		parent[x] = r
		return r
	}
	node := func(d *doc) string { return d.source + "\x00group\x00" + d.group }
	for i := range docs {
		d := &docs[i]
		a := find(node(d))
		if d.key != "" {
			if b := find(d.source + "\x00key\x00" + d.key); a != b {
				parent[b] = a
			}
		}
	}
	fold := make([]int, len(docs))
	for i := range docs {
		h := fnv.New32a()
		h.Write([]byte(find(node(&docs[i]))))
		fold[i] = int(h.Sum32() % uint32(k))
	}
	return fold
}

// calibrate fits the Platt calibration of the classifier's best-segment
// margins on held-out documents, each (source, label) cell weighing the
// same, and returns it as a model carrying only the calibration.
func calibrate(js []judged) *screen.Model {
	count := map[[2]string]int{}
	cell := func(j *judged) [2]string {
		l := "benign"
		if j.d.attack {
			l = "attack"
		}
		return [2]string{j.d.source, l}
	}
	for i := range js {
		if js[i].scored {
			count[cell(&js[i])]++
		}
	}
	var z []float64
	var y []bool
	var w []float64
	for i := range js {
		if js[i].scored {
			z = append(z, float64(js[i].margin))
			y = append(y, js[i].d.attack)
			w = append(w, 1/float64(count[cell(&js[i])]))
		}
	}
	a, b := screen.FitPlatt(z, y, w)
	cal := screen.NewModel()
	cal.CalA, cal.CalB = float32(a), float32(b)
	return cal
}

// thresholdFor returns the lowest threshold at which the benign documents
// flagged, averaged over the sources, are at most frac (and at least
// 0.5): every source's false-positive rate counts the same, whatever its
// size.
func thresholdFor(js []judged, cal *screen.Model, frac float64) float32 {
	var cands []float32
	for i := range js {
		if !js[i].d.attack {
			cands = append(cands, float32(js[i].score(cal)))
		}
	}
	slices.Sort(cands)
	cands = slices.Compact(cands)
	t := float32(math.Nextafter32(cands[len(cands)-1], 2))
	for k := len(cands) - 2; k >= 0; k-- {
		next := float32(math.Nextafter32(cands[k], 2))
		if meanFP(js, cal, next) > frac {
			break
		}
		t = next
	}
	return max(t, 0.5)
}

// meanFP is the share of benign documents scoring at least t, averaged
// over the sources.
func meanFP(js []judged, cal *screen.Model, t float32) float64 {
	var sum float64
	for _, s := range sources {
		var n, fp int
		for i := range js {
			if js[i].d.source == s && !js[i].d.attack {
				n++
				if js[i].score(cal) >= float64(t) {
					fp++
				}
			}
		}
		if n > 0 {
			sum += float64(fp) / float64(n)
		}
	}
	return sum / float64(len(sources))
}
