package screen

import (
	"bytes"
	"compress/gzip"
	_ "embed"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"
)

// The injection classifier: logistic regression over hashed segment
// features (features.go), trained by internal/screen/train from the
// corpora's dev splits (docs/model-card-injection.md). Its weights are
// embedded; the training program reproduces them bit for bit.

//go:embed injection.model.gz
var injectionModelFile []byte

// modelMagic opens a model file; the version changes when the feature
// extraction or the format does, so a stale model is refused rather than
// misread.
const modelMagic = "PCLINJ03"

// Model is a trained linear classifier over segment features, with a
// calibration of its margins.
type Model struct {
	Bias float32
	// Threshold is the decision threshold on calibrated scores chosen at
	// training time (docs/model-card-injection.md says how).
	Threshold float32
	// CalA and CalB calibrate the margin z: Score is 1/(1+e^-(CalA·z+CalB)),
	// fitted on scores of sources the model did not see, each source
	// weighing the same (Platt scaling). NewModel sets the identity.
	CalA, CalB float32
	W          []float32
}

// Margin is the raw linear score of the segment with vector v.
func (m *Model) Margin(v *SegmentVector) float32 {
	z := m.Bias
	for _, i := range v.Idx {
		z += m.W[i] * v.Value
	}
	return z
}

// Score is the calibrated probability that the segment with vector v is
// an injected instruction.
func (m *Model) Score(v *SegmentVector) float32 {
	return m.Calibrate(m.Margin(v))
}

// Calibrate maps a margin to a calibrated score.
func (m *Model) Calibrate(z float32) float32 {
	return float32(1 / (1 + math.Exp(-float64(m.CalA*z+m.CalB))))
}

// MarshalBinary encodes the model in the embedded file format: magic,
// feature bits, bias, threshold, calibration (a, b), then the weights,
// little-endian.
func (m *Model) MarshalBinary() ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(modelMagic)
	_ = binary.Write(&b, binary.LittleEndian, uint32(featureBits))
	for _, x := range []float32{m.Bias, m.Threshold, m.CalA, m.CalB} {
		_ = binary.Write(&b, binary.LittleEndian, x)
	}
	_ = binary.Write(&b, binary.LittleEndian, m.W)
	return b.Bytes(), nil
}

// CompressModel gzips an encoded model deterministically (no name, no
// time stamp), the form embedded in the binary.
func CompressModel(raw []byte) []byte {
	var b bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
	_, _ = zw.Write(raw)
	_ = zw.Close()
	return b.Bytes()
}

// UnmarshalModel decodes a model file, gzipped or not.
func UnmarshalModel(data []byte) (*Model, error) {
	if len(data) > 2 && data[0] == 0x1f && data[1] == 0x8b {
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("screen: model: %w", err)
		}
		raw, err := io.ReadAll(io.LimitReader(zr, featureDim*4+64))
		if err != nil {
			return nil, fmt.Errorf("screen: model: %w", err)
		}
		data = raw
	}
	if len(data) < len(modelMagic)+20 || string(data[:len(modelMagic)]) != modelMagic {
		return nil, errors.New("screen: not an injection model (bad magic or version)")
	}
	r := bytes.NewReader(data[len(modelMagic):])
	var bits uint32
	m := &Model{}
	_ = binary.Read(r, binary.LittleEndian, &bits)
	for _, x := range []*float32{&m.Bias, &m.Threshold, &m.CalA, &m.CalB} {
		_ = binary.Read(r, binary.LittleEndian, x)
	}
	if !(m.CalA > 0) || math.IsInf(float64(m.CalA), 0) || math.IsNaN(float64(m.CalB)) || math.IsInf(float64(m.CalB), 0) {
		return nil, fmt.Errorf("screen: model calibration (%v, %v) is not increasing and finite", m.CalA, m.CalB)
	}
	if bits != featureBits {
		return nil, fmt.Errorf("screen: model has %d feature bits, this build hashes %d", bits, featureBits)
	}
	if r.Len() != featureDim*4 {
		return nil, fmt.Errorf("screen: model weights are %d bytes, want %d", r.Len(), featureDim*4)
	}
	m.W = make([]float32, featureDim)
	if err := binary.Read(r, binary.LittleEndian, m.W); err != nil {
		return nil, fmt.Errorf("screen: model weights: %w", err)
	}
	return m, nil
}

// NewModel returns an untrained model (all weights zero).
func NewModel() *Model { return &Model{W: make([]float32, featureDim), Threshold: 0.5, CalA: 1} }

var embedded = sync.OnceValues(func() (*Model, error) { return UnmarshalModel(injectionModelFile) })

// EmbeddedModel is the classifier shipped in the binary. An error means
// the build is broken; callers refuse to start rather than screen without
// it.
func EmbeddedModel() (*Model, error) { return embedded() }

// vectorPool holds segment vectors (and their 32 KB seen-sets) for reuse.
var vectorPool = sync.Pool{New: func() any { return &SegmentVector{} }}

// MaxSegment scores the segments of text that the classifier judges
// (EachSegment) and returns the highest calibrated score and that
// segment's span. A text with no such segment scores 0.
func (m *Model) MaxSegment(text string) (score float32, start, end int) {
	return m.maxSegment(text, false)
}

// maxSegment is MaxSegment, or with every true the same over every segment
// of at least minSegWords words, the gate's or not.
func (m *Model) maxSegment(text string, every bool) (score float32, start, end int) {
	best, found := float32(0), false
	m.eachSegment(text, every, func(b, e int, z float32) {
		if !found || z > best {
			best, start, end, found = z, b, e, true
		}
	})
	if !found {
		return 0, 0, 0
	}
	// The calibration is increasing, so the best margin is the best score.
	return m.Calibrate(best), start, end
}

// EachSegment calls fn with the span and margin of every segment of text
// that the classifier judges: at least minSegWords words, and pointed to
// by the lexicon (gate.go).
func (m *Model) EachSegment(text string, fn func(start, end int, margin float32)) {
	m.eachSegment(text, false, fn)
}

func (m *Model) eachSegment(text string, every bool, fn func(start, end int, margin float32)) {
	v := vectorPool.Get().(*SegmentVector)
	defer vectorPool.Put(v)
	Segments(text, func(b, e int) {
		// Both must hold; the gate is tested first because it passes
		// over most segments of a document, which the count of words
		// would have let through.
		if !every && !pointed(text[b:e]) || !atLeastWords(text[b:e], minSegWords) {
			return
		}
		Vectorize(text[b:e], v)
		if v.Words < minSegWords {
			return
		}
		fn(b, e, m.Margin(v))
	})
}
