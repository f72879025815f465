package screen

import (
	"math"
	"math/rand/v2"
)

// Example is one labelled training segment.
type Example struct {
	Text     string
	Positive bool
}

// TrainOptions tune Train; the zero value is the shipped recipe.
type TrainOptions struct {
	Epochs int     // passes over the data (default 12)
	Rate   float64 // AdaGrad base learning rate (default 0.5)
	L2     float64 // L2 penalty per update (default 3e-2)
	Seed   uint64  // shuffle seed (default 1)
}

// Train fits a logistic regression with AdaGrad over the examples'
// hashed features. Positives are weighted so that both classes carry the
// same total weight. It is deterministic for a given input order and
// options: arithmetic is float64 with explicit rounding, and the shuffle
// uses a seeded PCG.
func Train(ex []Example, o TrainOptions) *Model {
	if o.Epochs == 0 {
		o.Epochs = 12
	}
	if o.Rate == 0 {
		o.Rate = 0.5
	}
	if o.L2 == 0 {
		o.L2 = 3e-2
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	vecs := make([]SegmentVector, len(ex))
	var scratch SegmentVector
	var pos int
	for i, e := range ex {
		Vectorize(e.Text, &scratch)
		vecs[i] = SegmentVector{Idx: append([]uint32(nil), scratch.Idx...), Value: scratch.Value, Words: scratch.Words}
		if e.Positive {
			pos++
		}
	}
	wPos := 1.0
	if pos > 0 && pos < len(ex) {
		wPos = float64(len(ex)-pos) / float64(pos)
	}
	w := make([]float64, featureDim)
	g2 := make([]float64, featureDim)
	var bias, gb2 float64
	order := make([]int, len(ex))
	for i := range order {
		order[i] = i
	}
	rng := rand.New(rand.NewPCG(o.Seed, o.Seed^0x9e3779b97f4a7c15))
	for range o.Epochs {
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		for _, k := range order {
			v := &vecs[k]
			if len(v.Idx) == 0 {
				continue
			}
			x := float64(v.Value)
			z := bias
			for _, i := range v.Idx {
				z += float64(w[i] * x)
			}
			p := 1 / (1 + math.Exp(-z))
			y, cw := 0.0, 1.0
			if ex[k].Positive {
				y, cw = 1, wPos
			}
			g := float64((p - y) * cw)
			gb2 += float64(g * g)
			bias -= float64(o.Rate * g / math.Sqrt(gb2+1e-8))
			for _, i := range v.Idx {
				gi := float64(g*x) + float64(o.L2*w[i])
				g2[i] += float64(gi * gi)
				w[i] -= float64(o.Rate * gi / math.Sqrt(g2[i]+1e-8))
			}
		}
	}
	m := NewModel()
	m.Bias = float32(bias)
	for i := range w {
		m.W[i] = float32(w[i])
	}
	return m
}
