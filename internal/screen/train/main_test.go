package main

import (
	"fmt"
	"math"
	"testing"

	"github.com/portcullis-dev/portcullis/internal/screen"
)

// Documents that share an attacker instruction or a group are never in
// different folds, even through a chain (a shares an instruction with b,
// b a group with c).
func TestGroupedFoldsKeepInstructionsAndGroupsTogether(t *testing.T) {
	var docs []doc
	for i := range 200 {
		docs = append(docs, doc{source: sources[i%3], group: fmt.Sprint("g", i%37), key: fmt.Sprint("k", i%23)})
	}
	docs = append(docs,
		doc{source: "injecagent", group: "chain-a", key: "chain-instruction"},
		doc{source: "injecagent", group: "chain-b", key: "chain-instruction"},
		doc{source: "injecagent", group: "chain-b"},
		doc{source: "bipia", group: "alone"},
	)
	for _, k := range []int{2, 5} {
		fold := groupedFolds(docs, k)
		seen := map[string]int{}
		for i, d := range docs {
			for _, id := range []string{d.source + "/group/" + d.group, d.source + "/key/" + d.key} {
				if d.key == "" && id == d.source+"/key/" {
					continue
				}
				if f, ok := seen[id]; ok && f != fold[i] {
					t.Fatalf("k=%d: %s in folds %d and %d", k, id, f, fold[i])
				}
				seen[id] = fold[i]
			}
			if fold[i] < 0 || fold[i] >= k {
				t.Fatalf("fold %d outside [0, %d)", fold[i], k)
			}
		}
		n := len(docs)
		if fold[n-4] != fold[n-3] || fold[n-3] != fold[n-2] {
			t.Errorf("k=%d: the chain is split: %v", k, fold[n-4:n-1])
		}
	}
}

// Leave one source out: each source is a fold of its own.
func TestSourceFolds(t *testing.T) {
	docs := []doc{{source: "bipia"}, {source: "injecagent"}, {source: "agentdojo"}, {source: "bipia"}}
	fold, k := sourceFolds(docs)
	if k != len(sources) || fold[0] != fold[3] || fold[0] == fold[1] || fold[1] == fold[2] {
		t.Errorf("folds %v of %d", fold, k)
	}
}

// FitPlatt recovers the parameters that generated the labels.
func TestFitPlatt(t *testing.T) {
	var z []float64
	var y []bool
	var w []float64
	for i := range 201 {
		x := -3 + 0.03*float64(i)
		p := 1 / (1 + math.Exp(-(2*x - 1)))
		pos := int(math.Round(200 * p))
		for j := range 200 {
			z = append(z, x)
			y = append(y, j < pos)
			w = append(w, 1)
		}
	}
	a, b := screen.FitPlatt(z, y, w)
	if math.Abs(a-2) > 0.05 || math.Abs(b+1) > 0.05 {
		t.Errorf("a=%.3f b=%.3f, want 2 and -1", a, b)
	}
	// Weights count: doubling the positives' weight moves b by ln 2.
	for i := range w {
		if y[i] {
			w[i] = 2
		}
	}
	_, b2 := screen.FitPlatt(z, y, w)
	if math.Abs(b2-b-math.Ln2) > 0.05 {
		t.Errorf("weighted b=%.3f, want %.3f", b2, b+math.Ln2)
	}
}

// The threshold is the lowest at which the benign documents flagged,
// averaged over the sources, stay within the target; each source counts
// the same whatever its size.
func TestThresholdFor(t *testing.T) {
	id := screen.NewModel() // identity calibration: score = sigmoid(margin)
	var js []judged
	add := func(src string, attack bool, margins ...float32) {
		for _, m := range margins {
			js = append(js, judged{d: &doc{source: src, attack: attack}, scored: true, margin: m})
		}
	}
	// injecagent: 100 benign, the top two at margins 3 and 2.
	add("injecagent", false, 3, 2)
	for range 98 {
		add("injecagent", false, -2)
	}
	// agentdojo: 10 benign, one at 1; bipia: 10 benign, all low.
	add("agentdojo", false, 1)
	for range 9 {
		add("agentdojo", false, -3)
		add("bipia", false, -3)
	}
	add("bipia", false, -3)
	add("bipia", true, 4)
	sig := func(x float64) float32 { return float32(1 / (1 + math.Exp(-x))) }
	// 5% averaged: agentdojo's one (10%) alone is 3.3%; with injecagent's
	// two (2%) it is 4%; its next benign (at -2) would flag them all.
	t5 := thresholdFor(js, id, 0.05)
	if !(t5 > sig(-2) && t5 <= sig(1)) {
		t.Errorf("5%%: threshold %v, want in (%v, %v]", t5, sig(-2), sig(1))
	}
	if fp := meanFP(js, id, t5); fp > 0.05 || math.Abs(fp-0.04) > 1e-9 {
		t.Errorf("5%%: mean false positives %v, want 0.04", fp)
	}
	// 1% averaged: injecagent's top (1%) is 0.33%, its second 0.67%;
	// agentdojo's (3.3%) is too many.
	t1 := thresholdFor(js, id, 0.01)
	if !(t1 > sig(1) && t1 <= sig(2)) || meanFP(js, id, t1) > 0.01 {
		t.Errorf("1%%: threshold %v (mean %v), want in (%v, %v]", t1, meanFP(js, id, t1), sig(1), sig(2))
	}
	// Tallies count what the threshold flags.
	per := tallies(js, id, t1)
	if per["injecagent"].flagged != 2 || per["agentdojo"].flagged != 0 || per["bipia"].detected != 1 || per["all"].benign != 120 {
		t.Errorf("tallies %+v", per)
	}
}
