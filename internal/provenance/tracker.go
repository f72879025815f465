package provenance

import (
	"crypto/rand"
	"encoding/binary"
	"hash/maphash"
	"strings"
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
	// maxAskedBytes bounds the filter of what the user asked for.
	maxAskedBytes = 16 << 10
	// minNamed is the shortest value (in letters and digits) that can
	// name a record: shorter ones ("Bob", "2024") name too much.
	minNamed = minGrams
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
)

// Hash domains, so that a gram, a short value and a number never collide
// by construction.
const (
	domGram   = 0x67
	domShort  = 0x73
	domNumber = 0x6e
	domIdent  = 0x69
	domCode   = 0x63
	domStart  = 0x5e
	domEnd    = 0x24
	domLong   = 0x6c00
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
	// asked holds what the user's request itself said (Intent only), to
	// tell which records of a result the user pointed at (Named).
	asked    filter
	maxBytes int
	// skipped: some output was not observed (Skip); like a full
	// untrusted filter, the tracker then fails closed.
	skipped bool
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
	return &Tracker{maxBytes: maxBytes, trusted: filter{maxBytes: maxBytes}, untrusted: filter{maxBytes: maxBytes}, asked: filter{maxBytes: maxAskedBytes}}
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
		t.maxBytes, t.trusted.maxBytes, t.untrusted.maxBytes, t.asked.maxBytes = DefaultMaxBytes, DefaultMaxBytes, DefaultMaxBytes, maxAskedBytes
	}
	if src == Trusted && t.blind() {
		// First sight can no longer be checked: trusted output teaches
		// nothing more (what it names reads as unseen, or untrusted).
		return
	}
	t.skel, t.ends = skeleton(t.skel[:0], text, t.ends[:0])
	s := t.skel
	add := func(h uint64) {
		switch src {
		case Intent:
			t.trusted.add(h)
			t.asked.add(h)
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
			if src == Intent {
				t.asked.add(gramHash(s[i:]))
			}
		}
	}
	start := 0
	for w, end := range t.ends {
		// The grams that begin and end each word: a value is trusted only
		// when its first and last letters are where a seen word began and
		// ended.
		if start+gram <= len(s) {
			add(boundHash(s[start:], domStart))
		}
		if end >= gram {
			add(boundHash(s[end-gram:], domEnd))
		}
		// Short values: runs of whole words too short to hold a gram at
		// every phase.
		for k := w; k < len(t.ends) && t.ends[k]-start < minGrams; k++ {
			add(shortHash(s[start:t.ends[k]]))
		}
		start = end
	}
	numbers(text, func(n []byte) { add(mix(maphash.Bytes(strSeed, n), seed^domNumber)) })
	// Identifiers exactly as written (lower-cased): an address, a host,
	// an IBAN, a long number. A recipient is judged by these, separators
	// and all.
	screen.Destinations(text, func(d string) { add(identHash(d)) })
	forEachCode(text, func(code string) {
		if separated(code) {
			add(codeHash(code))
		}
	})
	t.release()
}

// release drops scratch buffers grown by a large text, so that a session
// keeps only its filters.
func (t *Tracker) release() {
	const keep = 64 << 10
	if cap(t.skel) > keep {
		t.skel = nil
	}
	if cap(t.ends) > keep/8 {
		t.ends = nil
	}
	if cap(t.covered) > keep {
		t.covered = nil
	}
}

// observeTrustedGrams indexes the grams of trusted output s except those
// touching a stretch that untrusted output showed first. Untrusted text was
// indexed at its own phase, so every position of s is looked up there: a
// stretch seen before shows as grams found at every fourth position, and
// no gram overlapping the bytes they cover is made trusted. Called with mu
// held.
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
		touches := false
		for k := i; k < i+gram && !touches; k++ {
			touches = covered[k]
		}
		if !touches {
			t.trusted.add(gramHash(s[i:]))
		}
	}
	t.covered = covered
}

func gramHash(b []byte) uint64 {
	return mix(binary.LittleEndian.Uint64(b), seed^domGram)
}

func boundHash(b []byte, dom uint64) uint64 {
	return mix(binary.LittleEndian.Uint64(b), seed^dom)
}

// codeHash hashes a word with separators, lower-cased.
func codeHash(code string) uint64 {
	return mix(maphash.String(strSeed, strings.ToLower(code)), seed^domCode)
}

// separated: the word has, between letters or digits, a separator that
// changes what it names: the dot of a host, the at sign of an address, the
// slash of a path or URL. Hyphens and underscores are only spelling
// ("Hotel-Le-Marais"), and the skeleton judges those.
func separated(w string) bool {
	for i := 1; i < len(w)-1; i++ {
		switch w[i] {
		case '/', '.', '@', ':':
			return true
		}
	}
	return false
}

func identHash(d string) uint64 {
	return mix(maphash.String(strSeed, d), seed^domIdent)
}

// shortHash hashes a short value: up to 7 bytes are packed with their
// length into one word (exact, and cheaper than hashing), longer ones
// hashed.
func shortHash(b []byte) uint64 {
	if len(b) < 8 {
		var x [8]byte
		copy(x[:], b)
		x[7] = byte(len(b))
		return mix(binary.LittleEndian.Uint64(x[:]), seed^domShort)
	}
	return mix(maphash.Bytes(strSeed, b), seed^domShort^domLong)
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

// lookup is the origin of one hash: trusted, untrusted or unseen.
func (t *Tracker) lookup(h uint64) Origin {
	switch {
	case t.trusted.has(h):
		return FromTrusted
	case t.untrusted.has(h):
		return FromUntrusted
	}
	return Unseen
}

// failClosed: once the untrusted filter is full, what it did not learn
// cannot be told from what the model wrote, so anything not trusted is
// untrusted. Called with mu held.
func (t *Tracker) failClosed(o Origin) Origin {
	if o == Unseen && t.blind() {
		return FromUntrusted
	}
	return o
}

// Blind reports whether the tracker fails closed (it may have missed
// untrusted output: its filter is full, or output went unobserved).
func (t *Tracker) Blind() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.blind()
}

// blind: the tracker may have missed untrusted output (its filter is
// full, or output went unobserved). Called with mu held.
func (t *Tracker) blind() bool { return t.untrusted.full || t.skipped }

// Skip records that the session read output without observing it (the
// policies did not read provenance then): from now on the tracker fails
// closed, as with a full filter.
func (t *Tracker) Skip() {
	t.mu.Lock()
	t.skipped = true
	t.mu.Unlock()
}

// Value is the origin of a structured value (a recipient, an amount, an
// identifier): where the whole of it was seen. A value that is or carries
// an identifier (an address, a host, an IBAN, a long number) is trusted
// only if each identifier was seen exactly so; a value seen nowhere as a
// whole is still untrusted when it carries an identifier or a stretch of
// text found only in untrusted output ("IBAN: <the attacker's>").
func (t *Tracker) Value(v string) Origin {
	v = lookedUp(v)
	t.mu.Lock()
	defer t.mu.Unlock()
	ids := t.identifiers(v)
	o := t.whole(v)
	switch {
	case o == FromUntrusted || ids == FromUntrusted:
		return FromUntrusted
	case o == FromTrusted && ids != FromTrusted && ids != None:
		return t.failClosed(Unseen) // trusted letters, another identifier
	}
	return t.failClosed(o)
}

// Named reports whether the user's request itself (a task's purpose or a
// signed intent, not trusted output) contains v, a value of at least 11
// letters and digits, from the first letter of a word to the last of
// another: the title of the meeting the user asked about, the name of the
// hotel the user chose.
func (t *Tracker) Named(v string) bool {
	if len(v) > maxValue {
		return false
	}
	v = screen.Normalize(v).Text
	t.mu.Lock()
	defer t.mu.Unlock()
	t.skel, t.ends = skeleton(t.skel[:0], v, t.ends[:0])
	s := t.skel
	if len(s) < minNamed || !t.asked.has(boundHash(s, domStart)) || !t.asked.has(boundHash(s[len(s)-gram:], domEnd)) {
		return false
	}
	for phase := range stride {
		all := true
		for i := phase; i+gram <= len(s) && all; i += stride {
			all = t.asked.has(gramHash(s[i:]))
		}
		if all {
			return true
		}
	}
	return false
}

// lookedUp is a value as it is judged: its first maxValue bytes,
// normalised as observed text is.
func lookedUp(v string) string {
	if len(v) > maxValue {
		v = v[:maxValue]
	}
	return screen.Normalize(v).Text
}

// Number is the origin of a number given as a JSON number.
func (t *Tracker) Number(canonical string) Origin {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.failClosed(t.lookup(numberHash(canonical)))
}

// Content is the origin of free text the agent writes (a message body, a
// note): untrusted when an identifier in it (an address, a host, an
// account or other number, a code mixing letters and digits) was found
// only in untrusted output; trusted when the whole text was; else unseen.
// Quoting what it read is not what makes text untrusted: steering it
// somewhere is.
func (t *Tracker) Content(v string) Origin {
	v = lookedUp(v)
	t.mu.Lock()
	defer t.mu.Unlock()
	ids := t.identifiers(v)
	if ids == FromUntrusted {
		return FromUntrusted
	}
	switch t.whole(v) {
	case FromTrusted:
		if ids == FromTrusted || ids == None {
			return FromTrusted
		}
	case None:
		return None
	}
	if ids == Unseen && t.blind() {
		return FromUntrusted
	}
	return Unseen
}

// whole judges v as one value. Called with mu held.
func (t *Tracker) whole(v string) Origin {
	if o := t.numberOrigin(v); o != Unseen {
		return o
	}
	t.skel, t.ends = skeleton(t.skel[:0], v, t.ends[:0])
	s := t.skel
	if len(s) == 0 {
		return None
	}
	if len(s) < minGrams {
		return t.lookup(shortHash(s))
	}
	// Trusted needs the value's first and last grams where a seen word
	// began and ended; then, at one phase, every gram.
	bounded := t.trusted.has(boundHash(s, domStart)) && t.trusted.has(boundHash(s[len(s)-gram:], domEnd))
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
		case allTrusted && bounded:
			return FromTrusted
		case allSeen && !allTrusted || longest >= untrustedRun:
			o = FromUntrusted
		}
	}
	return o
}

// numberOrigin judges v as a number when it is one: trusted when every
// reading of it was seen trusted ("25,000" is 25 or 25000), untrusted when
// any was seen only in untrusted output, else Unseen (not a number, or not
// seen as one). Called with mu held.
func (t *Tracker) numberOrigin(v string) Origin {
	rs := canonicalNumbers(v)
	if len(rs) == 0 {
		return Unseen
	}
	all := true
	for _, r := range rs {
		switch t.lookup(numberHash(r)) {
		case FromUntrusted:
			return FromUntrusted
		case Unseen:
			all = false
		}
	}
	if all {
		return FromTrusted
	}
	return Unseen
}

// identifiers judges the identifiers in v together: None when there are
// none, FromUntrusted when any was found only in untrusted output,
// FromTrusted when every one was seen trusted, else Unseen. Addresses,
// hosts, IBANs and long numbers are compared exactly; other codes (words
// mixing letters and digits) as whole values. Called with mu held.
func (t *Tracker) identifiers(v string) Origin {
	worst := None
	judge := func(o Origin) {
		if o == None {
			return
		}
		worst = max(worst, o)
	}
	screen.Destinations(v, func(d string) { judge(t.lookup(identHash(d))) })
	forEachCode(v, func(code string) {
		switch {
		case worst == FromUntrusted:
		case separated(code):
			// A name with dots, slashes or an at sign (a host, a path, a
			// handle): exactly as seen, separators and all.
			judge(t.lookup(codeHash(code)))
		default:
			judge(t.whole(code))
		}
	})
	return worst
}

// forEachCode calls fn with each whitespace-separated word of v that has
// at least 6 letters and digits, among them a digit, or a path or host
// separator inside, without the punctuation around it.
func forEachCode(v string, fn func(string)) {
	for i := 0; i < len(v); {
		for i < len(v) && isSpace(v[i]) {
			i++
		}
		start := i
		alnum, digit, sep := 0, false, false
		for i < len(v) && !isSpace(v[i]) {
			c := v[i]
			switch {
			case isDigit(c):
				alnum, digit = alnum+1, true
			case isLetter(c) || c >= 0x80:
				alnum++
			case c == '/' || c == '.' || c == '_' || c == '-' || c == '@':
				sep = true
			}
			i++
		}
		if alnum < 6 || !digit && !sep {
			continue
		}
		w := trimPunct(v[start:i])
		if digit || separatedAny(w) {
			fn(w)
		}
	}
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// separatedAny: a separator inside w (not at its ends).
func separatedAny(w string) bool {
	for i := 1; i < len(w)-1; i++ {
		switch w[i] {
		case '/', '.', '_', '-', '@':
			return true
		}
	}
	return false
}

// punct marks the punctuation trimmed around a word.
var punct = func() (t [256]bool) {
	for _, c := range ".,;:!?\"'()[]{}<>*`" {
		t[c] = true
	}
	return t
}()

func trimPunct(w string) string {
	for len(w) > 0 && punct[w[0]] {
		w = w[1:]
	}
	for len(w) > 0 && punct[w[len(w)-1]] {
		w = w[:len(w)-1]
	}
	return w
}
