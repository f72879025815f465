package screen

// The classifier scores only the segments that the lexicon points to.
// An instruction aimed at the model has a shape the lexicon sees without
// any weights: it asks (please), speaks to the reader (you, your, the
// AI, its reply) or about the speaker (my, me), overrides (ignore,
// instead), presses (must, now), sends something somewhere (an action
// verb with a destination), opens with a verb (an imperative, also after
// a label: "TODO: delete ...", "- forward ...") or asks a question.
// Most text in tool results has none of these (records, logs, code, prose
// in the third person), and the classifier's cost is in hashing the
// features and reading their weights, so the gate, one pass over the
// words with the lexicon, saves most of it. The technique patterns still
// read every segment.
//
// What the gate may miss is an instruction with none of these marks, for
// example an imperative whose verb is not in the lexicon and that follows
// no label ("Draft an introduction ..."). docs/model-card-injection.md
// gives what it keeps and loses on the corpora, measured with every
// source left out in turn.

// pointCues are the cues that alone point the classifier at a segment:
// all but an action verb (which needs a destination or to open a
// clause), a destination alone and a lead-in word.
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
		clause := start >= 2 && seg[start-1] == ' ' && clauseMark[seg[start-2]]
		i = end
		if n == 0 && questionWord(w) {
			return true
		}
		e, ok := lookup(h, w)
		if !ok {
			leadRun = false
			continue
		}
		if e.c&pointCues != 0 {
			return true
		}
		if e.class == classVerb && (leadRun && n < 3 || clause) {
			return true // an imperative
		}
		if seen |= e.c; seen&(cueAction|cueDestination) == cueAction|cueDestination {
			return true
		}
		leadRun = leadRun && e.c&cueLeadIn != 0
	}
	return false
}

// clauseMark are the bytes that, followed by a space, may open a clause
// with an imperative after a label or in a list: "TODO: ", "1) ",
// "> ", "- ", "* ".
var clauseMark = [256]bool{':': true, ')': true, '>': true, '-': true, '*': true}

// questionWord reports whether the lower-cased word w opens a question.
func questionWord(w []byte) bool {
	switch string(w) {
	case "what", "which", "who", "whom", "whose", "why", "how", "where", "when":
		return true
	}
	return false
}
