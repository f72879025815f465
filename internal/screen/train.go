package screen

import (
	"math"
	"math/rand/v2"
)

// Example is one labelled training segment.
type Example struct {
	Text     string
	Positive bool
	Weight   float64 // relative weight within its class (0 counts as 1)
}

// TrainOptions tune Train; the zero value is the shipped recipe.
type TrainOptions struct {
	Epochs int     // passes over the data (default 12)
	Rate   float64 // AdaGrad base learning rate (default 0.5)
	L2     float64 // L2 penalty per update of word features (default 5)
	L2Form float64 // L2 penalty per update of form features (IsFormFeature; default 10)
	Seed   uint64  // shuffle seed (default 1)
}

// Train fits a logistic regression with AdaGrad over the examples'
// hashed features. Examples carry their weight, and positives are scaled
// so that both classes carry the same total weight. It is deterministic
// for a given input order and options: arithmetic is float64 with
// explicit rounding, and the shuffle uses a seeded PCG. The model's
// calibration is the identity and its threshold 0.5: the caller fits
// both on held-out scores.
func Train(ex []Example, o TrainOptions) *Model {
	if o.Epochs == 0 {
		o.Epochs = 12
	}
	if o.Rate == 0 {
		o.Rate = 0.5
	}
	if o.L2 == 0 {
		o.L2 = 5
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	if o.L2Form == 0 {
		o.L2Form = 10
	}
	vecs := make([]SegmentVector, len(ex))
	weights := make([]float64, len(ex))
	var scratch SegmentVector
	var wPos, wNeg float64
	for i, e := range ex {
		Vectorize(e.Text, &scratch)
		vecs[i] = SegmentVector{Idx: append([]uint32(nil), scratch.Idx...), Value: scratch.Value, Words: scratch.Words}
		weights[i] = e.Weight
		if weights[i] == 0 {
			weights[i] = 1
		}
		if e.Positive {
			wPos += weights[i]
		} else {
			wNeg += weights[i]
		}
	}
	// Both classes weigh what the negatives do, in sum.
	if wPos > 0 && wNeg > 0 {
		for i, e := range ex {
			if e.Positive {
				weights[i] = float64(weights[i] * wNeg / wPos)
			}
		}
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
			y, cw := 0.0, weights[k]
			if ex[k].Positive {
				y = 1
			}
			g := float64((p - y) * cw)
			gb2 += float64(g * g)
			bias -= float64(o.Rate * g / math.Sqrt(gb2+1e-8))
			for _, i := range v.Idx {
				l2 := o.L2
				if IsFormFeature(i) {
					l2 = o.L2Form
				}
				gi := float64(g*x) + float64(l2*w[i])
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

// FitPlatt fits the calibration p = 1/(1+e^-(a·z+b)) of margins z to
// labels y under weights w (Platt scaling) by Newton's method on the
// weighted log-loss. It is deterministic for a given input order.
func FitPlatt(z []float64, y []bool, w []float64) (a, b float64) {
	a, b = 1, 0
	for range 100 {
		var ga, gb, haa, hab, hbb float64
		for i := range z {
			p := 1 / (1 + math.Exp(-float64(a*z[i]+b)))
			t := 0.0
			if y[i] {
				t = 1
			}
			d := float64(w[i] * (p - t))
			ga += float64(d * z[i])
			gb += d
			h := float64(w[i] * float64(p*(1-p)))
			haa += float64(float64(h*z[i]) * z[i])
			hab += float64(h * z[i])
			hbb += h
		}
		// A little ridge keeps the step defined when the classes separate.
		haa, hbb = haa+1e-6, hbb+1e-6
		det := float64(haa*hbb) - float64(hab*hab)
		da := (float64(hbb*ga) - float64(hab*gb)) / det
		db := (float64(haa*gb) - float64(hab*ga)) / det
		a, b = a-da, b-db
		if math.Abs(da)+math.Abs(db) < 1e-10 {
			break
		}
	}
	return a, b
}
