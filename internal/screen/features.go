package screen

import (
	"math"
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
	emit := func(start, end int) {
		b, e := trimFrame(s, start, end)
		// A segment longer than the classifier reads (maxSegTokens
		// words) is cut after that many words, so that padding cannot
		// push an instruction past what is read. Fewer bytes than this
		// cannot hold that many words.
		for e-b >= 2*maxSegTokens-1 {
			cut := b + wordCut(s[b:e], maxSegTokens)
			if cut >= e {
				break
			}
			if pb, pe := trimFrame(s, b, cut); pe > pb {
				fn(pb, pe)
			}
			b, e = trimFrame(s, cut, e)
		}
		if e > b {
			fn(b, e)
		}
	}
	start := 0 // not seen by emit: a register through the loop
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !segmentBytes[c] {
			if i-start < maxSegment || c != ' ' && c != ',' {
				continue // nothing below applies to it
			}
			// A run this long is cut at a space or a comma.
			emit(start, i)
			start = i + 1
			continue
		}
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
		if cut {
			emit(start, min(i, len(s)))
			start = next
			i = next - 1
		}
	}
	if start < len(s) {
		emit(start, len(s))
	}
}

// trimFrame trims from s[b:e] the spaces and punctuation that only frame
// a segment.
func trimFrame(s string, b, e int) (int, int) {
	for b < e && isFrame(s[b]) {
		b++
	}
	for e > b && isFrame(s[e-1]) {
		e--
	}
	return b, e
}

// wordCut returns where word n+1 of seg starts (words as the features
// read them), or len(seg) if seg has n words or fewer.
func wordCut(seg string, n int) int {
	var buf [64]byte
	for i, k := 0, 0; ; k++ {
		start, _, _, end := nextWord(seg, i, &buf)
		if start == len(seg) || k == n {
			return start
		}
		i = end
	}
}

// segmentBytes are the bytes Segments looks at in any segment: the cuts,
// an escape and the sentence ends (a long run's cuts, spaces and commas,
// are looked at only in a long run).
var segmentBytes = func() (t [256]bool) {
	for _, c := range []byte("\n\r\"|\t{}[]\\.!?;") {
		t[c] = true
	}
	return
}()

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

// The feature space has two parts: features of the segment's form (cues,
// word classes, shape) and features of its words (topic). Training
// regularises them apart (TrainOptions.L2Form).
const (
	formBits = 15
	formDim  = 1 << formBits
	topicDim = featureDim - formDim
)

// IsFormFeature reports whether feature index i is a form feature.
func IsFormFeature(i uint32) bool { return i >= topicDim }

// segmentFeatures hashes the features of one segment and returns its
// number of words. Features of its words (topic): lower-cased words and
// word bigrams. Features of its form, which carry over to instructions
// on topics never seen in training:
//   - word-class bigrams and trigrams, and the opening class pair and
//     triple, where closed-class words (pronouns, determiners, modals,
//     the cue words) stand for themselves and open-class words for their
//     class (verb, destination, reply, AI, number, other): "please V my
//     x" whatever the verb and the object;
//   - an imperative: a verb opening the segment, or after lead-in words;
//   - cue classes, cue classes among the first three words, and pairs of
//     cues (an action with the speaker's own things, addressed to the
//     reader, with a destination; the reader's reply addressed to it);
//   - a question by its opening word, the share of words separated by
//     spaces (prose, not paths or identifiers), an e-mail address, and a
//     bucket of the segment's length.
//
// Character n-grams (inside words, and across word boundaries) were
// measured and left out: they fit the training sources' vocabulary and
// did not carry over to a held-out source (docs/model-card-injection.md).
func segmentFeatures(seg string, v *SegmentVector) int {
	var words [maxSegTokens]uint32   // hash of each word
	var classes [maxSegTokens]uint32 // its form token: the word, or its class
	var kinds [maxSegTokens]byte     // its class
	n := 0
	var buf [64]byte
	var cueSeen cue
	var leadIn uint8 // bit k: word k is a lead-in word
	spaced := 0      // words after the first preceded by a space
	mail := false    // a word is preceded by '@' (an e-mail address)
	form := func(x uint32) { v.add(topicDim + x%formDim) }
	topic := func(x uint32) { v.add(x % topicDim) }
	for i := 0; n < maxSegTokens; {
		start, w, h, end := nextWord(seg, i, &buf)
		if start == len(seg) {
			break
		}
		if start > 0 && n > 0 {
			switch seg[start-1] {
			case ' ':
				spaced++
			case '@':
				mail = true
			}
		}
		i = end
		words[n] = h
		e, ok := lookup(h, w)
		kind := classOther
		switch {
		case ok:
			kind = e.class
		case w[0] >= '0' && w[0] <= '9':
			kind = classNum
		}
		kinds[n] = kind
		classes[n] = h
		if kind != classSelf {
			classes[n] = fnvByte(fnvByte(fnvOffset, 'K'), kind)
		}
		if e.c&cueLeadIn != 0 && n < 8 {
			leadIn |= 1 << n
		}
		if c := e.c; c != 0 {
			cueSeen |= c
			if n < 3 {
				// A request or command opens with its verb, or with
				// "please" and then its verb.
				form(fnvByte(fnvByte(fnvByte(fnvOffset, 'O'), byte(c)), byte(c>>8)))
			}
		}
		n++
		topic(fnvByte(h, 'u'))
	}
	for k := 1; k < n; k++ {
		topic(mix(words[k-1], words[k], 'b'))
		form(mix(classes[k-1], classes[k], 'k'))
		if k > 1 {
			form(mix(mix(classes[k-2], classes[k-1], 't'), classes[k], 't'))
		}
	}
	switch {
	case n > 2:
		form(mix(mix(classes[0], classes[1], 'q'), classes[2], 'q'))
		fallthrough
	case n > 1:
		form(mix(classes[0], classes[1], 'p'))
	}
	// An imperative: a verb opens the segment, or follows only lead-in
	// words ("please", "then", "also").
	for k := 0; k < min(n, 3); k++ {
		if kinds[k] == classVerb {
			form(fnvByte(fnvByte(fnvOffset, 'I'), byte(k)))
		}
		if leadIn&(1<<k) == 0 {
			break
		}
	}
	if n > 0 && seg[len(seg)-1] == '?' {
		form(mix(classes[0], 0, '?'))
	}
	if n > 1 {
		form(fnvByte(fnvByte(fnvOffset, '_'), byte('0'+4*spaced/(n-1))))
	}
	if mail {
		form(fnvByte(fnvOffset, '@'))
	}
	for c := cue(1); c != 0 && c <= cueSeen; c <<= 1 {
		if cueSeen&c != 0 {
			form(fnvByte(fnvByte(fnvByte(fnvOffset, 'C'), byte(c)), byte(c>>8)))
		}
	}
	for _, pair := range cuePairs {
		if cueSeen&pair == pair {
			form(fnvByte(fnvByte(fnvByte(fnvOffset, 'P'), byte(pair)), byte(pair>>8)))
		}
	}
	form(fnvByte(fnvByte(fnvOffset, 'l'), byte('0'+min(n/4, 9))))
	return n
}

// nextWord finds the first word of seg at or after i. It returns where
// the word starts (len(seg) if there is none), the word lower-cased into
// buf (truncated at len(buf)), its hash, and where it ends.
func nextWord(seg string, i int, buf *[64]byte) (start int, w []byte, h uint32, end int) {
	for i < len(seg) {
		if c := seg[i]; c < utf8.RuneSelf {
			if asciiWord[c] {
				break
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(seg[i:])
		if isWordRune(r) {
			break
		}
		i += size
	}
	start = i
	w = buf[:0]
	h = uint32(fnvOffset)
	for i < len(seg) {
		if c := seg[i]; c < utf8.RuneSelf { // ASCII: the same as below, by table
			if !asciiWord[c] {
				break
			}
			if len(w)+utf8.UTFMax <= cap(w) {
				lc := asciiLower[c]
				w = append(w, lc)
				h = fnvByte(h, lc)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(seg[i:])
		if !isWordRune(r) {
			break
		}
		if len(w)+utf8.UTFMax <= cap(w) {
			from := len(w)
			w = utf8.AppendRune(w, unicode.ToLower(r))
			for _, c := range w[from:] {
				h = fnvByte(h, c)
			}
		}
		i += size
	}
	return start, w, h, i
}

// cuePairs are pairs of cues that together mark a request: an action
// with the speaker's own things ("send my ..."), an action addressed to
// the reader, an action with a destination, "please" with an action, an
// override with an action, the reader's reply ("your response"), and the
// AI named with a second person or an action.
var cuePairs = [...]cue{
	cueAction | cueFirstPerson, cueAction | cueSecondPerson, cueAction | cueDestination,
	cuePolite | cueAction, cueOverride | cueAction, cueSecondPerson | cueReply,
	cueReader | cueSecondPerson, cueReader | cueAction,
}

// mix hashes a pair of hashes and a tag: one multiplication, the high
// half of the product (a pair per word of every segment is on the hot
// path).
func mix(a, b uint32, tag byte) uint32 {
	x := (uint64(a)<<32 | uint64(b)) ^ uint64(tag)*0xff51afd7ed558ccd
	return uint32((x * 0x9e3779b97f4a7c15) >> 32)
}

// asciiWord is isWordRune for ASCII bytes (the classifier's word loop,
// per byte).
var asciiWord = func() (w [utf8.RuneSelf]bool) {
	for c := range utf8.RuneSelf {
		w[c] = isWordRune(rune(c))
	}
	return
}()

// asciiLower lower-cases A-Z (unicode.ToLower for ASCII) and leaves every
// other byte as it is: the classifier's words, the keyword index's text.
var asciiLower = func() (l [256]byte) {
	for c := range 256 {
		l[c] = byte(c)
		if c >= 'A' && c <= 'Z' {
			l[c] += 'a' - 'A'
		}
	}
	return
}()

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
	v.Words = segmentFeatures(seg, v)
	for _, i := range v.Idx {
		v.seen[i/64] = 0
	}
	v.Value = 0
	if len(v.Idx) > 0 {
		v.Value = float32(1 / math.Sqrt(float64(len(v.Idx))))
	}
}

// add adds feature i to v unless it has it.
func (v *SegmentVector) add(i uint32) {
	w, b := i/64, uint64(1)<<(i%64)
	if v.seen[w]&b == 0 {
		v.seen[w] |= b
		v.Idx = append(v.Idx, i)
	}
}
