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
		start, w, h, end := nextWord(seg, i, &buf)
		if start == len(seg) {
			return false
		}
		i = end
		if n == 0 && questionWord(w) {
			return true
		}
		e, _ := lookup(h, w)
		if start > 0 && seg[start-1] == '@' || isWebWord(w) {
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

// questionWord reports whether the lower-cased word w opens a question.
func questionWord(w []byte) bool {
	switch string(w) {
	case "what", "which", "who", "whom", "whose", "why", "how", "where", "when":
		return true
	}
	return false
}

// isWebWord reports whether the lower-cased word w opens a URL.
func isWebWord(w []byte) bool {
	switch string(w) {
	case "http", "https", "www":
		return true
	}
	return false
}
