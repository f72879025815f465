package provenance

import (
	"crypto/rand"
	"encoding/binary"
	"hash/maphash"
	"sync"

	"github.com/portcullis-dev/portcullis/internal/screen"
)

// Source is where observed text came from.
type Source uint8

const (
	// Intent is what the user asked for (a task's purpose, a signed
	// per-session request): always trusted.
	Intent Source = iota
	// Trusted is output the operator trusts: an upstream without the
	// untrusted_input label, or a result field declared system-generated.
	Trusted
	// Untrusted is output other people may have written.
	Untrusted
)

// Origin is where a value was first met. Its order is "how much worse":
// the origin of several values together is the greatest of theirs.
type Origin uint8

const (
	// None: nothing to judge (no letters or digits in the value).
	None Origin = iota
	// FromTrusted: found in the user's request or trusted output.
	FromTrusted
	// Unseen: found nowhere the session read: the model wrote it.
	Unseen
	// FromUntrusted: found only in untrusted output, or it carries an
	// identifier or a stretch of text found only there.
	FromUntrusted
)

// String is the origin as policies see it.
func (o Origin) String() string {
	switch o {
	case FromTrusted:
		return "trusted"
	case Unseen:
		return "unseen"
	case FromUntrusted:
		return "untrusted"
	}
	return ""
}

// Bounds.
const (
	// DefaultMaxBytes is the default memory of each of a session's two
	// filters (trusted, untrusted): about 87,000 grams and words, the
	// skeleton of some 70 KB of distinct text.
	DefaultMaxBytes = 256 << 10
	// MaxObserved is the text observed per call of Observe; the rest is
	// ignored (and so reads as unseen).
	MaxObserved = 1 << 20
	// maxValue is the part of a looked-up value that is judged.
	maxValue = 64 << 10
	// stride is the step between indexed grams; minGrams is the shortest
	// skeleton looked up by grams (one gram at every phase). Shorter
	// values are indexed and looked up as whole runs of words.
	stride   = 4
	minGrams = gram + stride - 1
	// untrustedRun is how many consecutive indexed grams found only in
	// untrusted output (a stretch of 12 letters and digits) make a value
	// untrusted even when the rest of it is not found.
	untrustedRun = 2
	// maxShortWords is how many words a short value may span.
	maxShortWords = 3
)

// Hash domains, so that a gram, a short value and a number never collide
// by construction.
const (
	domGram   = 0x67
	domShort  = 0x73
	domNumber = 0x6e
)

var (
	seed    = randomSeed()
	strSeed = maphash.MakeSeed()
)

func randomSeed() uint64 {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("provenance: no randomness: " + err.Error())
	}
	return binary.LittleEndian.Uint64(b[:])
}

// Tracker is one session's provenance memory.
type Tracker struct {
	mu        sync.Mutex
	trusted   filter
	untrusted filter
	maxBytes  int
	// buffers reused under mu
	skel    []byte
	ends    []int
	covered []bool
}

// New returns a Tracker whose filters hold at most maxBytes each
// (DefaultMaxBytes when maxBytes <= 0).
func New(maxBytes int) *Tracker {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBytes
	}
	return &Tracker{maxBytes: maxBytes, trusted: filter{maxBytes: maxBytes}, untrusted: filter{maxBytes: maxBytes}}
}

// Observe indexes text (already normalised with screen.Normalize) as seen
// from src.
func (t *Tracker) Observe(text string, src Source) {
	if len(text) > MaxObserved {
		text = text[:MaxObserved]
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.maxBytes == 0 { // the zero Tracker
		t.maxBytes, t.trusted.maxBytes, t.untrusted.maxBytes = DefaultMaxBytes, DefaultMaxBytes, DefaultMaxBytes
	}
	t.skel, t.ends = skeleton(t.skel[:0], text, t.ends[:0])
	s := t.skel
	add := func(h uint64) {
		switch src {
		case Intent:
			t.trusted.add(h)
		case Trusted:
			// First sight decides: what untrusted output showed first
			// stays untrusted.
			if !t.untrusted.has(h) {
				t.trusted.add(h)
			}
		case Untrusted:
			if !t.trusted.has(h) {
				t.untrusted.add(h)
			}
		}
	}
	if src == Trusted && len(t.untrusted.layers) > 0 {
		t.observeTrustedGrams(s)
	} else {
		f := &t.trusted
		if src == Untrusted {
			f = &t.untrusted
		}
		for i := 0; i+gram <= len(s); i += stride {
			f.add(gramHash(s[i:]))
		}
	}
	// Short values: runs of up to maxShortWords whole words too short to
	// hold a gram at every phase.
	start := 0
	for w, end := range t.ends {
		for k := 0; k < maxShortWords && w+k < len(t.ends); k++ {
			e := t.ends[w+k]
			if e-start >= minGrams {
				break
			}
			add(shortHash(s[start:e]))
		}
		start = end
	}
	numbers(text, func(n []byte) { add(mix(maphash.Bytes(strSeed, n), seed^domNumber)) })
}

// observeTrustedGrams indexes the grams of trusted output s except those
// inside a stretch that untrusted output showed first. Untrusted text was
// indexed at its own phase, so every position of s is looked up there: a
// stretch seen before shows as grams found at every fourth position, and
// the bytes they cover are not made trusted. Called with mu held.
func (t *Tracker) observeTrustedGrams(s []byte) {
	n := len(s) - gram + 1
	if n <= 0 {
		return
	}
	covered := t.covered[:0]
	covered = append(covered, make([]bool, len(s))...)
	for j := range n {
		if t.untrusted.has(gramHash(s[j:])) {
			for k := j; k < j+gram; k++ {
				covered[k] = true
			}
		}
	}
	for i := 0; i < n; i += stride {
		inside := true
		for k := i; k < i+gram && inside; k++ {
			inside = covered[k]
		}
		if !inside {
			t.trusted.add(gramHash(s[i:]))
		}
	}
	t.covered = covered
}

func gramHash(b []byte) uint64 {
	return mix(binary.LittleEndian.Uint64(b), seed^domGram)
}

func shortHash(b []byte) uint64 {
	return mix(maphash.Bytes(strSeed, b), seed^domShort)
}

func numberHash(n string) uint64 {
	return mix(maphash.String(strSeed, n), seed^domNumber)
}

// Full reports whether either filter stopped learning.
func (t *Tracker) Full() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.trusted.full || t.untrusted.full
}

// Bytes is the memory the tracker's filters hold.
func (t *Tracker) Bytes() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.trusted.bytes() + t.untrusted.bytes()
}

// Value is the origin of a structured value (a recipient, an amount, an
// identifier): where the whole of it was seen. A value seen nowhere as a
// whole is still untrusted when it carries an identifier or a stretch of
// text found only in untrusted output ("IBAN: <the attacker's>").
func (t *Tracker) Value(v string) Origin {
	if len(v) > maxValue {
		v = v[:maxValue]
	}
	v = screen.Normalize(v).Text
	t.mu.Lock()
	defer t.mu.Unlock()
	o := t.whole(v)
	if o == FromTrusted || o == FromUntrusted {
		return o
	}
	if t.identifiers(v) == FromUntrusted {
		return FromUntrusted
	}
	return o
}

// Number is the origin of a number given as a JSON number.
func (t *Tracker) Number(canonical string) Origin {
	t.mu.Lock()
	defer t.mu.Unlock()
	h := numberHash(canonical)
	switch {
	case t.trusted.has(h):
		return FromTrusted
	case t.untrusted.has(h):
		return FromUntrusted
	}
	return Unseen
}

// Content is the origin of free text the agent writes (a message body, a
// note): untrusted when an identifier in it (an address, a host, an
// account or other number, a code mixing letters and digits) was found
// only in untrusted output; trusted when the whole text was; else unseen.
// Quoting what it read is not what makes text untrusted: steering it
// somewhere is.
func (t *Tracker) Content(v string) Origin {
	if len(v) > maxValue {
		v = v[:maxValue]
	}
	v = screen.Normalize(v).Text
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.identifiers(v) == FromUntrusted {
		return FromUntrusted
	}
	switch t.whole(v) {
	case FromTrusted:
		return FromTrusted
	case None:
		return None
	}
	return Unseen
}

// whole judges v as one value. Called with mu held.
func (t *Tracker) whole(v string) Origin {
	if n := canonicalNumber(v); n != "" {
		h := numberHash(n)
		switch {
		case t.trusted.has(h):
			return FromTrusted
		case t.untrusted.has(h):
			return FromUntrusted
		}
	}
	t.skel, t.ends = skeleton(t.skel[:0], v, t.ends[:0])
	s := t.skel
	if len(s) == 0 {
		return None
	}
	if len(s) < minGrams {
		h := shortHash(s)
		switch {
		case t.trusted.has(h):
			return FromTrusted
		case t.untrusted.has(h):
			return FromUntrusted
		}
		return Unseen
	}
	// Observed text is indexed at every stride-th gram from its start; v
	// may sit at any offset in it, so each phase is tried.
	o := Unseen
	for phase := range stride {
		allTrusted, allSeen, run, longest := true, true, 0, 0
		for i := phase; i+gram <= len(s); i += stride {
			h := gramHash(s[i:])
			inT := t.trusted.has(h)
			inU := !inT && t.untrusted.has(h)
			allTrusted = allTrusted && inT
			allSeen = allSeen && (inT || inU)
			if inU {
				run++
				longest = max(longest, run)
			} else {
				run = 0
			}
		}
		switch {
		case allTrusted:
			return FromTrusted
		case allSeen || longest >= untrustedRun:
			o = FromUntrusted
		}
	}
	return o
}

// identifiers is FromUntrusted when an identifier in v was found only in
// untrusted output. Called with mu held.
func (t *Tracker) identifiers(v string) Origin {
	worst := None
	judge := func(id string) {
		if worst == FromUntrusted {
			return
		}
		if o := t.whole(id); o == FromUntrusted {
			worst = o
		}
	}
	screen.Destinations(v, func(d string) {
		if i := indexByte(d, ':'); i >= 0 {
			d = d[i+1:]
		}
		judge(d)
	})
	// Words that mix letters and digits, or long digit runs: codes,
	// account numbers, file and host names, order and booking IDs.
	forEachCode(v, judge)
	return worst
}

// forEachCode calls fn with each whitespace-separated word of v that has
// at least 6 letters and digits, among them a digit, or a path or host
// separator inside.
func forEachCode(v string, fn func(string)) {
	start := -1
	flush := func(end int) {
		if start < 0 {
			return
		}
		w := trimPunct(v[start:end])
		start = -1
		alnum, digit, sep := 0, false, false
		for i := 0; i < len(w); i++ {
			c := w[i]
			switch {
			case isDigit(c):
				alnum, digit = alnum+1, true
			case isLetter(c) || c >= 0x80:
				alnum++
			case c == '/' || c == '.' || c == '_' || c == '-' || c == '@':
				sep = sep || (i > 0 && i < len(w)-1)
			}
		}
		if alnum >= 6 && (digit || sep) {
			fn(w)
		}
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c == ' ' || c == '\t' || c == '\n' || c == '\r' {
			flush(i)
			continue
		}
		if start < 0 {
			start = i
		}
	}
	flush(len(v))
}

func trimPunct(w string) string {
	const p = ".,;:!?\"'()[]{}<>*`"
	for len(w) > 0 && indexByte(p, w[0]) >= 0 {
		w = w[1:]
	}
	for len(w) > 0 && indexByte(p, w[len(w)-1]) >= 0 {
		w = w[:len(w)-1]
	}
	return w
}

func indexByte(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}
