package screen

import (
	"math"
	"strings"
	"unicode"
	"unicode/utf8"
)

// The injection classifier reads text one segment at a time: a sentence,
// a line, a table cell or a JSON string. An injected instruction is usually
// one or two sentences inside otherwise ordinary data, and scoring the
// whole document would dilute it.

// Segment bounds. Longer runs without a boundary are cut; shorter
// segments carry too little to judge and are skipped by the classifier
// (the patterns still see them).
const (
	maxSegment   = 600
	minSegWords  = 4
	featureBits  = 18
	featureDim   = 1 << featureBits
	maxSegTokens = 120
)

// Segments calls fn with the byte span of each segment of s.
func Segments(s string, fn func(start, end int)) {
	start := 0
	emit := func(end int) {
		// Trim spaces and punctuation that only frame the segment.
		b, e := start, end
		for b < e && isFrame(s[b]) {
			b++
		}
		for e > b && isFrame(s[e-1]) {
			e--
		}
		if e > b {
			fn(b, e)
		}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		cut := false
		next := i + 1
		switch c {
		case '\n', '\r', '"', '|', '\t', '{', '}', '[', ']':
			cut = true
		case '\\':
			// An escaped newline or quote inside JSON text.
			if i+1 < len(s) && (s[i+1] == 'n' || s[i+1] == 'r' || s[i+1] == '"' || s[i+1] == 't') {
				cut, next = true, i+2
			}
		case '.', '!', '?', ';':
			if i+1 < len(s) && (s[i+1] == ' ' || s[i+1] == '\n') || i+1 == len(s) {
				// Sentence end: keep the mark with the sentence.
				cut = true
				i++
				next = i
				if next > len(s) {
					next = len(s)
				}
			}
		}
		if !cut && i-start >= maxSegment && (c == ' ' || c == ',') {
			cut = true
		}
		if cut {
			emit(min(i, len(s)))
			start = next
			i = next - 1
		}
	}
	if start < len(s) {
		emit(len(s))
	}
}

func isFrame(c byte) bool {
	switch c {
	case ' ', ',', ':', '-', '*', '#', '>', '(', ')', '\'', '`', '=':
		return true
	}
	return false
}

// fnv-1a, 32 bit.
const (
	fnvOffset = 2166136261
	fnvPrime  = 16777619
)

func fnvByte(h uint32, c byte) uint32 { return (h ^ uint32(c)) * fnvPrime }

// featureSink receives hashed feature indices.
type featureSink func(idx uint32)

// segmentFeatures hashes the features of one segment: lower-cased words,
// word bigrams, the opening word and pair (imperatives open sentences),
// character trigrams inside words (robust to misspelling and
// substitutions), and a bucket of the segment's length. It returns the
// number of words.
func segmentFeatures(seg string, emit featureSink) int {
	var words [maxSegTokens]uint32 // hash of each word
	n := 0
	var buf [64]byte
	var cueSeen cue
	for i := 0; i < len(seg) && n < maxSegTokens; {
		r, size := utf8.DecodeRuneInString(seg[i:])
		if !isWordRune(r) {
			i += size
			continue
		}
		// One word, lower-cased into buf (truncated at len(buf)).
		w := buf[:0]
		for i < len(seg) {
			r, size = utf8.DecodeRuneInString(seg[i:])
			if !isWordRune(r) {
				break
			}
			if len(w)+utf8.UTFMax <= cap(w) {
				w = utf8.AppendRune(w, unicode.ToLower(r))
			}
			i += size
		}
		h := uint32(fnvOffset)
		for _, c := range w {
			h = fnvByte(h, c)
		}
		words[n] = h
		cue := cueOf(h, w)
		if cue != 0 {
			cueSeen |= cue
			if n < 3 {
				// A request or command opens with its verb, or with
				// "please" and then its verb.
				emit(fnvByte(fnvByte(fnvOffset, 'O'), byte(cue)) % featureDim)
			}
		}
		n++
		emit(fnvByte(h, 'u') % featureDim)
		// Character trigrams with word boundaries.
		if len(w) >= 4 {
			prev2, prev1 := byte('^'), w[0]
			for j := 1; j <= len(w); j++ {
				c := byte('$')
				if j < len(w) {
					c = w[j]
				}
				t := fnvByte(fnvByte(fnvByte(fnvByte(fnvOffset, 'c'), prev2), prev1), c)
				emit(t % featureDim)
				prev2, prev1 = prev1, c
			}
		}
	}
	for k := 1; k < n; k++ {
		emit(mix(words[k-1], words[k], 'b') % featureDim)
	}
	if n > 0 {
		emit(fnvByte(words[0], 's') % featureDim)
	}
	if n > 1 {
		emit(mix(words[0], words[1], 'o') % featureDim)
	}
	for c := cue(1); c != 0 && c <= cueSeen; c <<= 1 {
		if cueSeen&c != 0 {
			emit(fnvByte(fnvByte(fnvOffset, 'C'), byte(c)) % featureDim)
		}
	}
	// Pairs of cues: an action with the speaker's own things ("send my
	// ..."), an action addressed to the reader, an action with a
	// destination.
	for _, pair := range [...]cue{cueAction | cueFirstPerson, cueAction | cueSecondPerson, cueAction | cueDestination, cuePolite | cueAction, cueOverride | cueAction} {
		if cueSeen&pair == pair {
			emit(fnvByte(fnvByte(fnvOffset, 'P'), byte(pair)) % featureDim)
		}
	}
	lenBucket := byte('0' + min(n/4, 9))
	emit(fnvByte(fnvByte(fnvOffset, 'l'), lenBucket) % featureDim)
	return n
}

// cue is a class of words that signals a request or command regardless of
// topic: general English, not phrases from any corpus.
type cue uint8

const (
	cueAction       cue = 1 << iota // an imperative-capable verb of doing
	cuePolite                       // please, kindly
	cueFirstPerson                  // my, me, mine, our
	cueSecondPerson                 // you, your
	cueOverride                     // ignore, disregard, forget, instead, instructions
	cueModal                        // must, should, need, immediately, urgent
	cueDestination                  // email, address, url, account, website, link
)

// cueTable is cues as an open-addressing table keyed by the word's hash:
// a lookup per word of every segment is on the hot path, and a string map
// costs several times more.
var cueTable = func() (t [1024]struct {
	word string
	c    cue
}) {
	for w, c := range cues {
		h := fnvString(w)
		for k := h % 1024; ; k = (k + 1) % 1024 {
			if t[k].word == "" {
				t[k].word, t[k].c = w, c
				break
			}
		}
	}
	return t
}()

// cueOf returns the cues of the lower-cased word w, whose hash is h.
func cueOf(h uint32, w []byte) cue {
	for k := h % 1024; cueTable[k].word != ""; k = (k + 1) % 1024 {
		if cueTable[k].word == string(w) {
			return cueTable[k].c
		}
	}
	return 0
}

func fnvString(s string) uint32 {
	h := uint32(fnvOffset)
	for i := 0; i < len(s); i++ {
		h = fnvByte(h, s[i])
	}
	return h
}

var cues = func() map[string]cue {
	m := map[string]cue{}
	add := func(c cue, words string) {
		for _, w := range strings.Fields(words) {
			m[w] |= c
		}
	}
	add(cueAction, `send email forward transfer pay wire deposit withdraw donate delete remove erase
		update change modify set grant give share post publish upload download invite add create make
		book reserve buy purchase sell order cancel unlock lock open close disable enable turn move
		redirect schedule access retrieve get fetch find list read search check tell reply respond
		answer write translate summarize summarise mention include provide ensure insert execute run
		install click visit navigate go call text message follow subscribe approve accept print output
		say repeat reveal show display export save store copy attach replace rename sign register reset
		apply assign release increase decrease adjust allow block report leave join grab collect
		compile gather use transmit deliver contact notify recommend promote advertise answer respond
		incorporate append prepend start stop kill shut disconnect format encrypt decrypt`)
	add(cuePolite, `please kindly plz pls`)
	add(cueFirstPerson, `my me mine our myself`)
	add(cueSecondPerson, `you your yourself you're`)
	add(cueOverride, `ignore disregard forget instead instruction instructions override bypass previous prior above earlier`)
	add(cueModal, `must should need needs immediately urgent urgently important asap now`)
	add(cueDestination, `email e-mail address url website link account inbox phone number iban channel server`)
	return m
}()

func mix(a, b uint32, tag byte) uint32 {
	h := fnvByte(fnvOffset, tag)
	for _, x := range [2]uint32{a, b} {
		h = fnvByte(h, byte(x))
		h = fnvByte(h, byte(x>>8))
		h = fnvByte(h, byte(x>>16))
		h = fnvByte(h, byte(x>>24))
	}
	return h
}

func isWordRune(r rune) bool {
	if r < utf8.RuneSelf {
		return r == '\'' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
	}
	return unicode.IsLetter(r) || unicode.IsDigit(r)
}

// atLeastWords reports whether seg holds at least n words, cheaply, so
// that keys, numbers and short values skip feature hashing.
func atLeastWords(seg string, n int) bool {
	words, in := 0, false
	for i := 0; i < len(seg); i++ {
		c := seg[i]
		w := c >= 0x80 || c == '\'' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if w && !in {
			words++
			if words >= n {
				return true
			}
		}
		in = w
	}
	return false
}

// SegmentVector is the sparse feature vector of one segment: distinct
// indices in order of first occurrence, each with the same weight (binary
// features scaled to unit length).
type SegmentVector struct {
	Idx   []uint32
	Value float32
	Words int
	seen  []uint64 // bitset over featureDim, clear between segments
}

// Vectorize returns the feature vector of seg, reusing v's storage.
func Vectorize(seg string, v *SegmentVector) {
	if v.seen == nil {
		v.seen = make([]uint64, featureDim/64)
	}
	v.Idx = v.Idx[:0]
	v.Words = segmentFeatures(seg, func(i uint32) {
		w, b := i/64, uint64(1)<<(i%64)
		if v.seen[w]&b == 0 {
			v.seen[w] |= b
			v.Idx = append(v.Idx, i)
		}
	})
	for _, i := range v.Idx {
		v.seen[i/64] = 0
	}
	v.Value = 0
	if len(v.Idx) > 0 {
		v.Value = float32(1 / math.Sqrt(float64(len(v.Idx))))
	}
}
