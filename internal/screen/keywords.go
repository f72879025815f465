package screen

// keywordIndex finds, in one pass, where any of a set of lower-case
// keywords occurs, and which rules own it. Regular expressions then run
// only on windows around those places: the prefilter is what keeps
// pattern and secret screening linear in the input.
//
// It is an Aho-Corasick automaton compiled to a complete DFA: one table
// read per input byte, no failure links to follow while scanning. Bytes
// are mapped to classes first (the keywords use a few dozen distinct
// bytes; every other byte is one class), which keeps the table small
// enough to stay in cache (a state's row is a few hundred bytes, not 2
// KiB), and the class table folds ASCII upper case, so the text is not
// copied to be lower-cased.
type keywordIndex struct {
	class  [256]int32 // input byte -> its class (0: no keyword has it)
	width  int32      // classes: the length of a state's row
	delta  []int32    // row start of state s (s*width) + class -> row start of the next state (^ it: that state has matches)
	own    []int32    // state -> the keyword ending there + 1 (0: none)
	link   []int32    // state -> the longest proper suffix state with a keyword of its own (0: none)
	lens   []int      // keyword number -> length
	owners [][]int    // keyword number -> rule indices
	maxLen int        // the longest keyword's length
}

// newKeywordIndex compiles keywords (the built-in sets: a few thousand
// states; states times classes must stay within int32).
func newKeywordIndex(keywords map[string][]int) *keywordIndex {
	k := &keywordIndex{}
	// Classes: 0 for bytes in no keyword, then one per distinct byte. A
	// text byte is read as its ASCII lower case (a keyword's upper-case
	// byte then has a class no text byte maps to: it never matches, as
	// against a lower-cased copy).
	var classOf [256]int32
	width := int32(1)
	var words []string
	for w, rules := range keywords {
		if w == "" {
			continue // matches nowhere
		}
		words = append(words, w)
		k.owners = append(k.owners, rules)
		k.lens = append(k.lens, len(w))
		k.maxLen = max(k.maxLen, len(w))
		for i := 0; i < len(w); i++ {
			if classOf[w[i]] == 0 {
				classOf[w[i]] = width
				width++
			}
		}
	}
	for c := range 256 {
		k.class[c] = classOf[asciiLower[c]]
	}
	k.width = width

	// The trie: state 0 is the root; goto_[s*width+class] is the child
	// (0: none, the root being no one's child).
	goto_ := make([]int32, width)
	var own []int32 // state -> keyword number + 1 ending there (0: none)
	own = append(own, 0)
	for n, w := range words {
		s := int32(0)
		for i := 0; i < len(w); i++ {
			c := classOf[w[i]]
			t := goto_[s*width+c]
			if t == 0 {
				t = int32(len(own))
				own = append(own, 0)
				goto_ = append(goto_, make([]int32, width)...)
				goto_[s*width+c] = t
			}
			s = t
		}
		own[s] = int32(n) + 1
	}
	states := int32(len(own))

	// Breadth first: each state's failure link (the longest proper
	// suffix that is a trie state), its output link (the longest proper
	// suffix state with a keyword of its own: its matches are its own
	// keyword and then the output link's, longest first, in space linear
	// in the states) and its complete row (a missing child is the failure
	// state's transition).
	delta := make([]int32, int(states)*int(width))
	fail := make([]int32, states)
	link := make([]int32, states)
	queue := make([]int32, 0, states)
	for c := range width {
		if t := goto_[c]; t != 0 {
			delta[c] = t
			queue = append(queue, t) // fail[t] = 0, link[t] = 0
		}
	}
	for len(queue) > 0 {
		s := queue[0]
		queue = queue[1:]
		if f := fail[s]; own[f] != 0 {
			link[s] = f
		} else {
			link[s] = link[f]
		}
		for c := range width {
			if t := goto_[s*width+c]; t != 0 {
				fail[t] = delta[fail[s]*width+c]
				delta[s*width+c] = t
				queue = append(queue, t)
			} else {
				delta[s*width+c] = delta[fail[s]*width+c]
			}
		}
	}
	// Rows addressed by their start, so the scan multiplies nothing; a
	// state with matches as the complement of its row start (negative),
	// so the scan tests a sign, not a table.
	for i, t := range delta {
		delta[i] = t * width
		if own[t] != 0 || link[t] != 0 {
			delta[i] = ^delta[i]
		}
	}
	k.delta, k.own, k.link = delta, own, link
	return k
}

// splitScan is the length from which scan reads a text as two halves at
// once: two chains of table reads that do not wait on each other, where
// one chain waits on every read (each read's address is the last one's
// result).
const splitScan = 512

// scan calls fn(rule, start, end) for every keyword occurrence [start, end)
// in s, matching ASCII case-insensitively: in text order of the end, and
// at one end the longer keyword first.
//
// A long text is read from its start and, at the same time, from before
// its middle: the second reading starts maxLen-1 bytes before the middle,
// so that it sees whole every keyword ending past the middle, and reports
// only those (the first reports the others). Its hits wait in a fixed
// array until the first reading is done, which keeps the order; when the
// array is full (a text dense with keywords), the second reading stops
// there and goes on alone afterwards, reporting as it goes.
func (k *keywordIndex) scan(s string, fn func(rule, start, end int)) {
	if k.maxLen == 0 {
		return // no keywords
	}
	mid := len(s) / 2
	from := mid - k.maxLen + 1
	if len(s) < splitScan || from <= 0 {
		k.scanFrom(s, 0, 0, fn)
		return
	}
	type hit struct {
		row int32
		end int
	}
	var kept [32]hit
	n := 0
	a, b := int32(0), int32(0)
	i, j := 0, from
	for ; i < mid && n < len(kept); i, j = i+1, j+1 {
		a = k.delta[a+k.class[s[i]]]
		b = k.delta[b+k.class[s[j]]]
		if a < 0 {
			a = ^a
			k.report(a, i+1, fn)
		}
		if b < 0 {
			b = ^b
			if j >= mid {
				kept[n] = hit{b, j + 1}
				n++
			}
		}
	}
	k.scanFrom(s[:mid], i, a, fn)
	for _, h := range kept[:n] {
		k.report(h.row, h.end, fn)
	}
	k.scanFrom(s, j, b, fn) // j > mid here: every hit is past the middle
}

// scanFrom reads s from s[i] in state row (a row start), reporting as it
// goes.
func (k *keywordIndex) scanFrom(s string, i int, row int32, fn func(rule, start, end int)) {
	for ; i < len(s); i++ {
		row = k.delta[row+k.class[s[i]]]
		if row >= 0 {
			continue
		}
		row = ^row
		k.report(row, i+1, fn)
	}
}

// report calls fn for the keywords ending at end that the state whose row
// starts at row matches: its own, then its output links', longer first.
func (k *keywordIndex) report(row int32, end int, fn func(rule, start, end int)) {
	st := row / k.width
	if k.own[st] == 0 {
		st = k.link[st]
	}
	for ; st != 0; st = k.link[st] {
		n := k.own[st] - 1
		for _, r := range k.owners[n] {
			fn(r, end-k.lens[n], end)
		}
	}
}

// window is a span of text around keyword hits to run a rule's regex on.
type window struct{ start, end int }

// addWindow grows ws with [start, end), merging with the last window when
// they overlap (hits arrive in text order per rule).
func addWindow(ws []window, start, end int) []window {
	if n := len(ws); n > 0 && start <= ws[n-1].end {
		ws[n-1].end = max(ws[n-1].end, end)
		return ws
	}
	return append(ws, window{start, end})
}
