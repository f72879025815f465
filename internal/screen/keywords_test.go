package screen

import (
	"slices"
	"strings"
	"testing"
)

type keywordHit struct{ rule, start, end int }

// naiveHits is what a keyword index must report: every occurrence of
// every keyword in the ASCII-lower-cased text, by end, longer first.
func naiveHits(words []string, text string) []keywordHit {
	b := []byte(text)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	low := string(b)
	var hits []keywordHit
	for n, w := range words {
		for i := 0; i+len(w) <= len(low); i++ {
			if w != "" && low[i:i+len(w)] == w {
				hits = append(hits, keywordHit{n, i, i + len(w)})
			}
		}
	}
	slices.SortFunc(hits, func(a, b keywordHit) int {
		if a.end != b.end {
			return a.end - b.end
		}
		return (b.end - b.start) - (a.end - a.start)
	})
	return hits
}

func indexHits(k *keywordIndex, text string) []keywordHit {
	var hits []keywordHit
	k.scan(text, func(rule, start, end int) { hits = append(hits, keywordHit{rule, start, end}) })
	return hits
}

func checkKeywordIndex(t *testing.T, words []string, texts []string) {
	t.Helper()
	m := map[string][]int{}
	for n, w := range words {
		m[w] = []int{n}
	}
	k := newKeywordIndex(m)
	for _, text := range texts {
		got, want := indexHits(k, text), naiveHits(words, text)
		if !slices.Equal(got, want) {
			t.Fatalf("%d keywords, text %.200q:\n got %v\nwant %v", len(words), text, got, want)
		}
	}
}

var overlappingKeywords = []string{"he", "she", "his", "hers", "a", "aa", "aaa", "ab", "bab", "ABC", "key_", "-----begin", "é", "\x00x"}

// The index reports exactly the occurrences a search for each keyword
// finds, in the order the windows built from them rely on.
func TestKeywordIndexFindsEveryOccurrence(t *testing.T) {
	t.Parallel()
	texts := []string{"", "ushers", "USHERS sHe", "aaaa", "abab bab", "ABC abc", "KEY_ key-", "-----BEGIN-----begin",
		"caf\xc3\xa9 \xc3\x89", "\x00x\x00X", strings.Repeat("hishers", 50), typicalResult(), keywordDense()}
	checkKeywordIndex(t, overlappingKeywords, texts)

	// The real keyword sets, over the dev corpora.
	texts = append(texts, devCorpusTexts(t, 7)...)
	var words []string
	for w := range patternKeywords() {
		words = append(words, w)
	}
	sr := mustSecretRules(t)
	for _, r := range sr.rules {
		for _, w := range r.Keywords {
			if w = strings.ToLower(w); !slices.Contains(words, w) {
				words = append(words, w)
			}
		}
	}
	checkKeywordIndex(t, words, texts)
}

// A long text is read in two halves at once (scan): keywords ending on
// either side of the middle, across it, and exactly at it are each
// reported once and in order, and a text with more hits past the middle
// than the second reading keeps goes on in order too.
func TestKeywordIndexSplitReading(t *testing.T) {
	t.Parallel()
	words := append(slices.Clone(overlappingKeywords), "a-keyword-longer-than-the-rest")
	var texts []string
	for _, n := range []int{splitScan, splitScan + 1, 777, 2048} {
		mid := n / 2
		for _, w := range []string{"hers", "aaa", "a-keyword-longer-than-the-rest", "-----BEGIN"} {
			for at := mid - len(w) - 2; at <= mid+2; at++ {
				b := []byte(strings.Repeat("x", n))
				copy(b[at:], w)
				texts = append(texts, string(b))
			}
		}
		// Dense past the middle: hits keep coming after the kept ones.
		texts = append(texts, strings.Repeat("x", mid-3)+strings.Repeat("ushers", (n-mid+3)/6+1))
		texts = append(texts, strings.Repeat("a", n))
	}
	checkKeywordIndex(t, words, texts)

	// One-byte keywords (the second reading runs to the text's last byte),
	// on odd lengths too, and the kept array filling on the last byte.
	texts = nil
	for _, n := range []int{splitScan, splitScan + 1, splitScan + 3} {
		texts = append(texts, strings.Repeat("x", n-1)+"a", strings.Repeat("ab", n/2)+"b"[:n%2],
			strings.Repeat("x", n-32)+strings.Repeat("a", 32), strings.Repeat("x", n-33)+strings.Repeat("a", 33))
	}
	checkKeywordIndex(t, []string{"a", "b"}, texts)
	// A keyword longer than half the text: read in one.
	long := strings.Repeat("k", splitScan/2+10)
	checkKeywordIndex(t, []string{long, "k"}, []string{strings.Repeat("x", 100) + long + strings.Repeat("x", 200)})
}

// FuzzKeywordIndex checks the index against the plain search for any
// keyword set ("|"-separated) and any text.
func FuzzKeywordIndex(f *testing.F) {
	f.Add(strings.Join(overlappingKeywords, "|"), "ushers he said, AAAB bab")
	f.Add("a|aa|aaa|baa|Ab|\xff", "-----BEGIN key_ é aaaa BAA")
	f.Fuzz(func(t *testing.T, keywords, text string) {
		var words []string
		for _, w := range strings.Split(keywords, "|") {
			if !slices.Contains(words, w) {
				words = append(words, w)
			}
		}
		if len(words) > 64 {
			return
		}
		texts := []string{text}
		if text != "" && len(text) < splitScan {
			texts = append(texts, strings.Repeat(text, splitScan/len(text)+1)) // read in two halves
		}
		checkKeywordIndex(t, words, texts)
	})
}
