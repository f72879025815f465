package screen

import (
	"sync"

	ahocorasick "github.com/BobuSumisu/aho-corasick"
)

// keywordIndex finds, in one pass, where any of a set of lower-case
// keywords occurs, and which rules own it. Regular expressions then run
// only on windows around those places: the prefilter is what keeps
// pattern and secret screening linear in the input.
type keywordIndex struct {
	trie   *ahocorasick.Trie
	owners [][]int // keyword number -> rule indices
}

func newKeywordIndex(keywords map[string][]int) *keywordIndex {
	b := ahocorasick.NewTrieBuilder()
	k := &keywordIndex{}
	for w, rules := range keywords {
		b.AddString(w)
		k.owners = append(k.owners, rules)
	}
	k.trie = b.Build()
	return k
}

// lowerPool holds buffers for the ASCII-lower-cased copy of scanned text.
var lowerPool = sync.Pool{New: func() any { b := make([]byte, 0, 8192); return &b }}

// scan calls fn(rule, start, end) for every keyword occurrence [start, end)
// in s, matching ASCII case-insensitively.
func (k *keywordIndex) scan(s string, fn func(rule, start, end int)) {
	bp := lowerPool.Get().(*[]byte)
	low := *bp
	if cap(low) < len(s) {
		low = make([]byte, len(s))
	}
	low = low[:len(s)]
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c-'A' < 26 {
			c += 'a' - 'A'
		}
		low[i] = c
	}
	k.trie.Walk(low, func(end, n, pattern int64) bool {
		for _, r := range k.owners[pattern] {
			fn(r, int(end-n+1), int(end+1))
		}
		return true
	})
	*bp = low[:0]
	lowerPool.Put(bp)
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
