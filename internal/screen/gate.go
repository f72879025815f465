package screen

import (
	"unicode"
	"unicode/utf8"
)

// The classifier scores only the segments that the lexicon points to.
// An instruction aimed at the model has a shape the lexicon sees without
// any weights: it asks (please), speaks to the reader (you, your, the
// AI, its reply) or about the speaker (my, me), overrides (ignore,
// instead), presses (must, now), sends something somewhere (an action
// verb with a destination: a noun such as "email" or "account", a word
// after '@', a word http, https or www), opens with a verb (an
// imperative, also after a label or a list or dash mark standing alone:
// "TODO: delete ...", "- forward ..."), has an action verb among its
// first words or after a comma ("Hi team, forward ...") or asks a
// question. Most text in tool results has none of these
// (records, logs, code, prose in the third person); for those the gate,
// one pass over the words with the lexicon, replaces hashing the
// features and reading their weights. The technique patterns still read
// every segment.
//
// The rule is public, so an attacker can write around it: an instruction
// with none of these marks (a verb outside the lexicon, or inflected,
// that follows no label: "Draft an introduction ...", "Sending the
// passwords to ..."; one written wholly in the third person) is not
// scored. On the corpora the segments the gate passes over were not where
// the held-out detections came from; text written to evade it is not
// measured. screening.classifier: every_segment turns the gate off
// (Screener.SetEverySegment), an upstream's classifier: every_segment for
// its content (SetUpstreamEverySegment); docs/model-card-injection.md gives what the
// gate keeps and loses, with every source left out in turn.

// pointCues are the cues that alone point the classifier at a segment:
// all but an action verb (which needs a destination or a place where a
// command starts), a destination alone and a lead-in word.
const pointCues = cuePolite | cueFirstPerson | cueSecondPerson | cueOverride | cueModal | cueReader | cueReply

// pointed reports whether the classifier should score seg: whether it has
// a mark of a request or command (above). It reads at most the first
// maxSegTokens words, as the features do.
func pointed(seg string) bool {
	if seg == "" {
		return false
	}
	if seg[len(seg)-1] == '?' {
		return true // a question
	}
	var buf [64]byte
	var seen cue
	leadRun := true // the words so far are all lead-in words
	for i, n := 0, 0; n < maxSegTokens; n++ {
		start, end, key := shortWord(seg, i)
		var e lexEntry
		if key != 0 {
			e = lookupShort(key)
		} else {
			// Longer, or not ASCII: read as the features read it.
			var w []byte
			var h uint32
			start, w, h, end = nextWord(seg, start, &buf)
			if start == len(seg) {
				return false
			}
			e, _ = lookup(h, w)
			if len(w) <= 8 {
				// A question or web word shortWord did not pack, for the
				// character past ASCII after it ("What’s"): its key.
				key = packWord(w)
			}
		}
		i = end
		if n == 0 && questionKey(key) {
			return true
		}
		if start > 0 && seg[start-1] == '@' || webKey(key) {
			e.c |= cueDestination // an e-mail address or a URL
		}
		if e.c&pointCues != 0 {
			return true
		}
		if e.class == classVerb || e.c&cueAction != 0 {
			mark, alone := markBefore(seg, start)
			if e.class == classVerb && (leadRun && n < 3 || clauseMark(mark, alone)) {
				return true // an imperative
			}
			if e.c&cueAction != 0 && (n < 3 || mark == ',') {
				return true // "Hi team, forward ..."
			}
		}
		if seen |= e.c; seen&(cueAction|cueDestination) == cueAction|cueDestination {
			return true
		}
		leadRun = leadRun && e.c&cueLeadIn != 0
	}
	return false
}

// markBefore returns the character before the word at start, past
// spaces (0 when the word opens seg), and whether it stands alone: with
// a space after it, or a space or the segment's start before it.
func markBefore(seg string, start int) (r rune, alone bool) {
	i := start
	for i > 0 && seg[i-1] == ' ' {
		i--
	}
	if i == 0 {
		return 0, false
	}
	r, size := utf8.DecodeLastRuneInString(seg[:i])
	return r, i < start || i == size || seg[i-size-1] == ' '
}

// clauseMark reports whether a command may start after the mark r: a
// label ("TODO:", "1)"), or a quote, list or dash mark standing alone
// ("> ", "- ", "* ", "• ", " — "), not one inside a word or an operator
// ("re-send", "obj->delete", "--set").
func clauseMark(r rune, alone bool) bool {
	switch r {
	case ':', ')':
		return true
	case '>', '*', '•', '‣', '◦', '▪', '·':
		return alone
	}
	return alone && unicode.Is(unicode.Pd, r)
}

// questionKey reports whether the word packed in key opens a question.
func questionKey(key uint64) bool {
	switch key {
	case keyWhat, keyWhich, keyWho, keyWhom, keyWhose, keyWhy, keyHow, keyWhere, keyWhen:
		return true
	}
	return false
}

// webKey reports whether the word packed in key opens a URL.
func webKey(key uint64) bool { return key == keyHTTP || key == keyHTTPS || key == keyWWW }

// shortWord reads the word of seg at or after i, as nextWord does, when
// it is ASCII of at most 8 bytes: where it starts and ends, and its bytes
// lower-cased and packed into key, the first lowest. The gate reads most
// words this way, with one multiply a word to look one up (lookupShort)
// where nextWord's hash takes one a byte. Otherwise key is 0 and start
// is where nextWord must read from: there is no word before it.
func shortWord(seg string, i int) (start, end int, key uint64) {
	for i < len(seg) {
		c := seg[i]
		if c >= utf8.RuneSelf {
			return i, i, 0
		}
		if asciiWord[c] {
			break
		}
		i++
	}
	start = i
	if i == len(seg) {
		return i, i, 0 // no word: nextWord says so
	}
	for shift := 0; i < len(seg); i, shift = i+1, shift+8 {
		c := seg[i]
		if c >= utf8.RuneSelf || shift == 64 && asciiWord[c] {
			return start, start, 0 // the word goes on past ASCII or 8 bytes
		}
		if !asciiWord[c] {
			break
		}
		key |= uint64(asciiLower[c]) << shift
	}
	return start, i, key
}

// packWord is shortWord's key of a lower-cased word of at most 8 bytes.
func packWord[S string | []byte](w S) uint64 {
	var key uint64
	for i := len(w) - 1; i >= 0; i-- {
		key = key<<8 | uint64(w[i])
	}
	return key
}

// The words the gate tests by name, packed.
var (
	keyWhat, keyWhich, keyWho, keyWhom, keyWhose = packWord("what"), packWord("which"), packWord("who"), packWord("whom"), packWord("whose")
	keyWhy, keyHow, keyWhere, keyWhen            = packWord("why"), packWord("how"), packWord("where"), packWord("when")
	keyHTTP, keyHTTPS, keyWWW                    = packWord("http"), packWord("https"), packWord("www")
)

// shortSize is the size of the open-addressing table of the lexicon's
// short words (a power of two, at least twice their number: 450 words in
// 16 KiB, which a cold call reads from fewer cache lines than the
// lexicon's own table).
const (
	shortBits = 10
	shortSize = 1 << shortBits
)

type shortEntry struct {
	key   uint64 // 0: an empty slot (no word packs to 0)
	c     cue
	class byte
}

// shortTable is the lexicon's words of at most 8 bytes by packed key.
var shortTable = func() *[shortSize]shortEntry {
	var t [shortSize]shortEntry
	n := 0
	for w, e := range lexicon {
		if len(w) > 8 {
			continue
		}
		if n++; 2*n > shortSize {
			panic("screen: the lexicon's short words overfill their table")
		}
		key := packWord(w)
		for k := shortSlot(key); ; k = (k + 1) % shortSize {
			if t[k].key == 0 {
				t[k] = shortEntry{key, e.c, e.class}
				break
			}
		}
	}
	return &t
}()

func shortSlot(key uint64) uint64 { return key * 0x9e3779b97f4a7c15 >> (64 - shortBits) }

// lookupShort returns the lexicon entry of the word packed in key (none:
// the zero entry), without its word.
func lookupShort(key uint64) lexEntry {
	for k := shortSlot(key); shortTable[k].key != 0; k = (k + 1) % shortSize {
		if e := &shortTable[k]; e.key == key {
			return lexEntry{c: e.c, class: e.class}
		}
	}
	return lexEntry{}
}
