package provenance

import (
	"math/bits"
)

// A filter is a growing set of blocked Bloom filters: each layer is twice
// the size of the one before and is designed for 24 bits per element, so
// the false-match rate of one layer stays under 0.01% (8 bits set per
// element in a 512-bit block) and that of a full filter of eight layers
// under 0.1%. A full layer is kept and a new one added;
// when the next layer would pass maxBytes the filter is full.
type filter struct {
	layers   []layer
	maxBytes int
	full     bool
}

type layer struct {
	blocks [][8]uint64
	n, cap int
}

const (
	firstBlocks    = 16 // 1 KiB
	bitsPerElement = 24
	setBits        = 8
)

// add inserts h (a mixed hash) and reports false when the filter is full.
// A hash already in the newest layer is not counted again: reading the
// same text twice does not fill the filter (an older layer is not looked
// at, which would cost a cache miss per layer on every insert; a repeat
// costs at most one entry per layer).
func (f *filter) add(h uint64) bool {
	if k := len(f.layers); k > 0 && f.layers[k-1].has(h) {
		return true
	}
	if len(f.layers) == 0 || f.layers[len(f.layers)-1].n >= f.layers[len(f.layers)-1].cap {
		if !f.grow() {
			return false
		}
	}
	l := &f.layers[len(f.layers)-1]
	b := &l.blocks[blockOf(h, len(l.blocks))]
	x, y := h*mul1, h*mul2
	for i := range setBits / 2 {
		bx, by := (x>>(9*i))&511, (y>>(9*i))&511
		b[bx>>6] |= 1 << (bx & 63)
		b[by>>6] |= 1 << (by & 63)
	}
	l.n++
	return true
}

func (f *filter) grow() bool {
	if f.full {
		return false
	}
	n := firstBlocks
	used := 0
	if k := len(f.layers); k > 0 {
		n = 2 * len(f.layers[k-1].blocks)
		for _, l := range f.layers {
			used += len(l.blocks) * 64
		}
	}
	if used+n*64 > f.maxBytes {
		f.full = true
		return false
	}
	f.layers = append(f.layers, layer{blocks: make([][8]uint64, n), cap: n * 512 / bitsPerElement})
	return true
}

// has reports whether h may have been added (never false for an added h).
func (f *filter) has(h uint64) bool {
	x, y := h*mul1, h*mul2
	for i := len(f.layers) - 1; i >= 0; i-- {
		if f.layers[i].hasMixed(h, x, y) {
			return true
		}
	}
	return false
}

func (l *layer) has(h uint64) bool { return l.hasMixed(h, h*mul1, h*mul2) }

func (l *layer) hasMixed(h, x, y uint64) bool {
	b := &l.blocks[blockOf(h, len(l.blocks))]
	for j := range setBits / 2 {
		bx, by := (x>>(9*j))&511, (y>>(9*j))&511
		if b[bx>>6]&(1<<(bx&63)) == 0 || b[by>>6]&(1<<(by&63)) == 0 {
			return false
		}
	}
	return true
}

// bytes is the memory the filter holds.
func (f *filter) bytes() int {
	n := 0
	for _, l := range f.layers {
		n += len(l.blocks) * 64
	}
	return n
}

// The bits set for h within its block: four 9-bit fields from each of two
// multiplicative rehashes of h.
const (
	mul1 = 0x9E3779B97F4A7C15
	mul2 = 0xC2B2AE3D27D4EB4F
)

func blockOf(h uint64, n int) int {
	hi, _ := bits.Mul64(h, uint64(n))
	return int(hi)
}

// mix is a strong 64-bit finaliser (murmur3's fmix64) over x keyed with a
// per-process secret, so that nobody can aim a value at chosen filter bits.
func mix(x, seed uint64) uint64 {
	x ^= seed
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}
