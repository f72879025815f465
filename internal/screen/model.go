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
// extraction does, so a stale model is refused rather than misread.
const modelMagic = "PCLINJ02"

// Model is a trained linear classifier over segment features.
type Model struct {
	Bias      float32
	Threshold float32 // the decision threshold chosen at training time
	W         []float32
}

// Score is the probability that the segment with vector v is an injected
// instruction.
func (m *Model) Score(v *SegmentVector) float32 {
	z := m.Bias
	for _, i := range v.Idx {
		z += m.W[i] * v.Value
	}
	return float32(1 / (1 + math.Exp(-float64(z))))
}

// MarshalBinary encodes the model in the embedded file format: magic,
// feature bits, bias, threshold, then the weights, little-endian.
func (m *Model) MarshalBinary() ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(modelMagic)
	_ = binary.Write(&b, binary.LittleEndian, uint32(featureBits))
	_ = binary.Write(&b, binary.LittleEndian, m.Bias)
	_ = binary.Write(&b, binary.LittleEndian, m.Threshold)
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
	if len(data) < len(modelMagic)+12 || string(data[:len(modelMagic)]) != modelMagic {
		return nil, errors.New("screen: not an injection model (bad magic or version)")
	}
	r := bytes.NewReader(data[len(modelMagic):])
	var bits uint32
	m := &Model{}
	_ = binary.Read(r, binary.LittleEndian, &bits)
	_ = binary.Read(r, binary.LittleEndian, &m.Bias)
	_ = binary.Read(r, binary.LittleEndian, &m.Threshold)
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
func NewModel() *Model { return &Model{W: make([]float32, featureDim), Threshold: 0.5} }

var embedded = sync.OnceValues(func() (*Model, error) { return UnmarshalModel(injectionModelFile) })

// EmbeddedModel is the classifier shipped in the binary. An error means
// the build is broken; callers refuse to start rather than screen without
// it.
func EmbeddedModel() (*Model, error) { return embedded() }

// vectorPool holds segment vectors (and their 32 KB seen-sets) for reuse.
var vectorPool = sync.Pool{New: func() any { return &SegmentVector{} }}

// MaxSegment scores every segment of text with at least minSegWords words
// and returns the highest score and that segment's span. A text with no
// such segment scores 0.
func (m *Model) MaxSegment(text string) (score float32, start, end int) {
	v := vectorPool.Get().(*SegmentVector)
	defer vectorPool.Put(v)
	Segments(text, func(b, e int) {
		if !atLeastWords(text[b:e], minSegWords) {
			return
		}
		Vectorize(text[b:e], v)
		if v.Words < minSegWords {
			return
		}
		if s := m.Score(v); s > score {
			score, start, end = s, b, e
		}
	})
	return score, start, end
}
