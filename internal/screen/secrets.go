package screen

import (
	"fmt"
	"math"
	"regexp"
	"regexp/syntax"
	"slices"
	"sort"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/spf13/viper"
	"github.com/zricethezav/gitleaks/v8/config"
)

// Secret detection uses gitleaks' maintained rule set (its regexes,
// keywords, entropy floors, secret groups, stop words and allowlists) with
// a matcher of our own: one keyword pass over the text, then each rule's
// regex only on windows around its keywords, so that cost follows the
// keyword hits rather than rules × text. The decision for a match is
// gitleaks': same secret group, same entropy test, same allowlists.

// SecretRules is a compiled gitleaks rule set.
type SecretRules struct {
	rules []config.Rule
	// reach[i] is the longest match of rule i in bytes, or -1 when its
	// regex is unbounded: a match holding a keyword hit lies within reach
	// of it, so the regex only needs that much text around the hit.
	reach []int
	// anchored[i], for a rule whose every match begins with one of its
	// keywords, is its regex anchored at the start: a keyword hit where it
	// does not match cannot begin a match, and gets no window.
	anchored []*anchoredRule
	generic  int // index of gitleaks' generic-api-key rule, or -1
	global   []*config.Allowlist
	// stopWords matches each allowlist's stop words (see takeStopWords).
	stopWords map[*config.Allowlist]*keywordIndex
	keywords  *keywordIndex
	always    []int // rules without keywords: run on the whole text
	// withPatterns indexes the injection patterns' keywords with these
	// rules' (rule n+i for rule i, n the number of patterns): one pass
	// over a text for both (PatternsAndSecrets).
	withPatterns func() *keywordIndex

	noPrecheck bool // tests: every keyword hit gets the full window, unchecked
}

// Window reach around a keyword hit. A match begins at most a few dozen
// bytes before its keyword in gitleaks' rules and runs a few hundred after;
// PEM blocks run to their END line.
const (
	secretReachBefore = 320
	secretReachAfter  = 640
	pemReachAfter     = 16 << 10
)

var defaultSecretRules = sync.OnceValues(func() (*SecretRules, error) {
	return LoadSecretRules(config.DefaultConfig)
})

// DefaultSecretRules are gitleaks' default rules, as shipped in the
// gitleaks module this build pins.
func DefaultSecretRules() (*SecretRules, error) { return defaultSecretRules() }

// LoadSecretRules compiles a gitleaks TOML configuration.
func LoadSecretRules(toml string) (*SecretRules, error) {
	v := viper.New()
	v.SetConfigType("toml")
	if err := v.ReadConfig(strings.NewReader(toml)); err != nil {
		return nil, fmt.Errorf("screen: gitleaks rules: %w", err)
	}
	var vc config.ViperConfig
	if err := v.Unmarshal(&vc); err != nil {
		return nil, fmt.Errorf("screen: gitleaks rules: %w", err)
	}
	stops := takeStopWords(&vc)
	cfg, err := vc.Translate()
	if err != nil {
		return nil, fmt.Errorf("screen: gitleaks rules: %w", err)
	}
	sr := &SecretRules{global: cfg.Allowlists, generic: -1, stopWords: map[*config.Allowlist]*keywordIndex{}}
	lists := slices.Clone(cfg.Allowlists)
	for _, r := range cfg.Rules {
		lists = append(lists, r.Allowlists...)
	}
	for _, a := range lists {
		if len(a.StopWords) != 1 {
			continue
		}
		if words, ok := stops[a.StopWords[0]]; ok {
			sr.stopWords[a] = words
		}
	}
	kw := map[string][]int{}
	ids := append([]string(nil), cfg.OrderedRules...)
	sort.Strings(ids)
	for _, id := range ids {
		r := cfg.Rules[id]
		// Rules restricted to a file path (path-only, or a regex that
		// applies only inside files such as *.tf or nuget.config) do not
		// apply to tool traffic, which has no path: gitleaks itself skips
		// them for a fragment without one. Composite rules are not in the
		// default set and are not supported here.
		if r.Regex == nil || r.Path != nil || r.SkipReport || len(r.RequiredRules) > 0 {
			continue
		}
		i := len(sr.rules)
		sr.rules = append(sr.rules, r)
		sr.reach = append(sr.reach, maxMatchLen(r.Regex.String()))
		sr.anchored = append(sr.anchored, anchoredAtKeyword(r.Regex.String(), r.Keywords))
		if r.RuleID == genericRuleID {
			sr.generic = i
		}
		if len(r.Keywords) == 0 {
			sr.always = append(sr.always, i)
			continue
		}
		for _, k := range r.Keywords {
			k = strings.ToLower(k)
			kw[k] = append(kw[k], i)
		}
	}
	sr.keywords = newKeywordIndex(kw)
	sr.withPatterns = sync.OnceValue(func() *keywordIndex {
		both := patternKeywords()
		for w, rules := range kw {
			for _, i := range rules {
				both[w] = append(both[w], len(injectionPatterns)+i)
			}
		}
		return newKeywordIndex(both)
	})
	return sr, nil
}

// PatternsAndSecrets returns what InjectionPatterns(s) and Detect(s)
// return, reading s once for both sets of keywords rather than twice.
func (sr *SecretRules) PatternsAndSecrets(s string) (patterns, secrets []Finding) {
	var ps patternScan
	sc := sr.newScan(s)
	n := len(injectionPatterns)
	sr.withPatterns().scan(s, func(rule, start, end int) {
		if rule < n {
			ps.hit(s, rule, start, end)
		} else {
			sc.hit(rule-n, start, end)
		}
	})
	return ps.findings(s), sc.findings()
}

// Len is the number of rules in use.
func (sr *SecretRules) Len() int { return len(sr.rules) }

// Detect finds secrets in s. Each finding's span is the secret itself
// (the rule's secret group), its Rule the gitleaks rule ID.
func (sr *SecretRules) Detect(s string) []Finding {
	sc := sr.newScan(s)
	sr.keywords.scan(s, sc.hit)
	return sc.findings()
}

// secretScan gathers, from keyword hits in s, where each rule may match.
type secretScan struct {
	sr     *SecretRules
	s      string
	wins   map[int][]window
	starts map[int][]int
}

func (sr *SecretRules) newScan(s string) *secretScan {
	return &secretScan{sr: sr, s: s, wins: map[int][]window{}, starts: map[int][]int{}}
}

func (sc *secretScan) hit(rule, start, end int) {
	sr, s := sc.sr, sc.s
	if rule == sr.generic && !sr.noPrecheck && !genericPossible(s, end, sr.rules[rule].Entropy) {
		return
	}
	if a := sr.anchored[rule]; a != nil && !sr.noPrecheck {
		if !a.wordStart || start == 0 || isWordByte(s[start-1]) != isWordByte(s[start]) {
			sc.starts[rule] = append(sc.starts[rule], start) // a match may begin here
		}
		return
	}
	before, after := secretReachBefore, secretReachAfter
	if strings.Contains(sr.rules[rule].RuleID, "private-key") {
		after = pemReachAfter
	}
	lo, hi := start-before, end+after
	if r := sr.reach[rule]; r >= 0 && r <= before+after && !sr.noPrecheck {
		lo, hi = end-r, start+r // a bounded match that holds this hit
	}
	b, e := boundaryBefore(s, max(0, lo)), boundaryAfter(s, min(len(s), hi))
	sc.wins[rule] = addWindow(sc.wins[rule], b, e)
}

// findings runs each rule where the hits say it may match.
func (sc *secretScan) findings() []Finding {
	sr, s, wins, starts := sc.sr, sc.s, sc.wins, sc.starts
	var out []Finding
	for i, st := range starts {
		out = append(out, sr.detectAnchored(i, s, st)...)
	}
	for _, i := range sr.always {
		wins[i] = []window{{0, len(s)}}
	}
	for i, ws := range wins {
		for _, w := range ws {
			out = append(out, sr.detectRule(&sr.rules[i], s, w)...)
		}
	}
	sort.Slice(out, func(a, b int) bool {
		if out[a].Start != out[b].Start {
			return out[a].Start < out[b].Start
		}
		return out[a].Rule < out[b].Rule
	})
	return preferSpecific(dedupeSpans(out))
}

// preferSpecific drops a generic-api-key finding that overlaps a finding
// of a specific rule: "github-pat" says more than "generic-api-key" about
// the same bytes.
func preferSpecific(fs []Finding) []Finding {
	out := make([]Finding, 0, len(fs))
	for i, f := range fs {
		if f.Rule == genericRuleID && slices.ContainsFunc(fs, func(g Finding) bool {
			return g.Rule != genericRuleID && g.Start < f.End && f.Start < g.End
		}) {
			continue
		}
		out = append(out, fs[i])
	}
	return out
}

// genericRuleID is gitleaks' catch-all rule: a key-like word, an
// assignment, a long value. Its keywords (key, token, secret, ...) are
// everywhere in JSON, and its regex is the costliest to run, so a hit
// must first pass genericPossible.
const genericRuleID = "generic-api-key"

// genericPossible is a necessary condition for generic-api-key to report
// a finding with its keyword ending at e. It is read off the rule's regex
//
//	keyword [ \t\w.-]{0,20} [\s'"]{0,3} (=|>|:{1,3}=|\|\||:|=>|\?=|,) [\x60'"\s=]{0,5}
//	        ([\w.=-]{10,150}|[a-z0-9][a-z0-9+/]{11,}={0,3}) (terminator)
//
// and its entropy floor: within 23 bytes of e, crossing only name, space
// and quote characters, an operator begins; from there, crossing only
// operator, quote and space characters (at most 10), a value starts. A
// value is a maximal run of one of the two classes (the terminator leaves
// the regex no shorter choice), at least 10 long, and gitleaks keeps it
// only if its Shannon entropy exceeds the floor. Keys next to short or
// repetitive values (the bulk of JSON) are dropped here without running
// the regex, whose counted repetitions make it the costliest of the set.
// FuzzGenericPrecheck checks this against the unfiltered matcher.
func genericPossible(s string, e int, floor float64) bool {
	for p := e; p < len(s) && p <= e+23; p++ {
		c := s[p]
		switch {
		case c == '=' || c == '>' || c == ':' || c == '|' || c == '?' || c == ',':
			// Neither the name nor the quote part can hold these: the
			// operator begins here or nowhere.
			for v := p + 1; v < len(s) && v <= p+10; v++ {
				if valueCandidate(s, v, isWordValueChar, floor) || valueCandidate(s, v, isB64Char, floor) {
					return true
				}
				if !isOperatorOrQuote(s[v]) {
					return false
				}
			}
			return false
		case isWordValueChar(c) && c != '=' || c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v' || c == '\'' || c == '"':
			// name, space or quote characters before the operator
		default:
			return false
		}
	}
	return false
}

// valueCandidate reports whether the maximal run of class characters at v
// (with any '=' padding) is at least 10 long and above the entropy floor.
func valueCandidate(s string, v int, class func(byte) bool, floor float64) bool {
	n := 0
	for v+n < len(s) && class(s[v+n]) {
		n++
	}
	if n < 10 {
		return false
	}
	for v+n < len(s) && s[v+n] == '=' {
		n++
	}
	return floor == 0 || shannonEntropy(s[v:v+n]) > floor
}

// isWordValueChar is [\w.=-].
func isWordValueChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '=' || c == '-'
}

// isB64Char is (?i)[a-z0-9+/].
func isB64Char(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '+' || c == '/'
}

func isOperatorOrQuote(c byte) bool {
	switch c {
	case '=', '>', ':', '|', '?', '`', '\'', '"', ' ', '\t', '\n', '\r', '\f', '\v':
		return true
	}
	return false
}

// detectAnchored finds the matches of an anchored rule at its keyword
// hits, as a scan of the whole text would: from the leftmost hit, each
// match taken and the hits it covers skipped.
func (sr *SecretRules) detectAnchored(i int, s string, starts []int) []Finding {
	slices.Sort(starts)
	var out []Finding
	end := -1
	for _, start := range starts {
		if start < end {
			continue
		}
		loc := sr.anchored[i].re.FindStringIndex(s[start:])
		if loc == nil {
			continue
		}
		end = start + max(loc[1], 1)
		if f, ok := sr.decide(&sr.rules[i], s, start, start+loc[1]); ok {
			out = append(out, f)
		}
	}
	return out
}

// detectRule is gitleaks' per-rule decision (detect.detectRule) on one
// window: match, take the secret group, test entropy, apply the global
// and the rule's allowlists.
func (sr *SecretRules) detectRule(r *config.Rule, s string, w window) []Finding {
	var out []Finding
	for _, m := range r.Regex.FindAllStringIndex(s[w.start:w.end], -1) {
		if f, ok := sr.decide(r, s, w.start+m[0], w.start+m[1]); ok {
			out = append(out, f)
		}
	}
	return out
}

// takeStopWords replaces the stop words of each allowlist in vc by one
// placeholder word and returns, by placeholder, an index of the list's
// words. gitleaks compiles each list into an Aho-Corasick trie of its own:
// about 10 MB for its default generic-api-key list (1,446 words), most of
// the gateway's idle heap. A keywordIndex of the same words (a complete
// DFA over their few dozen byte classes) is about 1 MB and gives the same
// answer (TestStopWordsMatchAsGitleaks).
func takeStopWords(vc *config.ViperConfig) map[string]*keywordIndex {
	stops := map[string]*keywordIndex{}
	take := func(words *[]string) {
		if len(*words) == 0 {
			return
		}
		kw := map[string][]int{}
		for _, w := range *words {
			kw[strings.ToLower(w)] = []int{0} // as gitleaks' Validate lower-cases them
		}
		// Lower case and unique among the lists: gitleaks keeps it as it is.
		placeholder := fmt.Sprintf("portcullis-stop-words-%d", len(stops))
		stops[placeholder] = newKeywordIndex(kw)
		*words = []string{placeholder}
	}
	// The deprecated single [allowlist] form is still read by Translate:
	// its stop words too.
	//lint:ignore SA1019 gitleaks still translates the old form
	if old := vc.AllowList; old != nil {
		take(&old.StopWords)
	}
	for _, a := range vc.Allowlists {
		take(&a.StopWords)
	}
	for i := range vc.Rules {
		if a := vc.Rules[i].AllowList; a != nil {
			take(&a.StopWords)
		}
		for _, a := range vc.Rules[i].Allowlists {
			take(&a.StopWords)
		}
	}
	return stops
}

// containsStopWord is a.ContainsStopWord(s), through a's stop-word index.
func (sr *SecretRules) containsStopWord(a *config.Allowlist, s string) bool {
	k, ok := sr.stopWords[a]
	if !ok {
		found, _ := a.ContainsStopWord(s)
		return found
	}
	found := false
	k.scan(strings.ToLower(s), func(int, int, int) { found = true })
	return found
}

// decide is gitleaks' decision on the match s[start:end]: take the secret
// group, test entropy, apply the global and the rule's allowlists.
func (sr *SecretRules) decide(r *config.Rule, s string, start, end int) (Finding, bool) {
	match := strings.Trim(s[start:end], "\n")
	mStart := start + strings.Index(s[start:end], match)
	secret := match
	if groups := r.Regex.FindStringSubmatch(match); len(groups) >= 2 {
		if r.SecretGroup > 0 {
			if len(groups) <= r.SecretGroup {
				return Finding{}, false
			}
			secret = groups[r.SecretGroup]
		} else {
			for _, g := range groups[1:] {
				if g != "" {
					secret = g
					break
				}
			}
		}
	}
	if r.Entropy != 0 && shannonEntropy(secret) <= r.Entropy {
		return Finding{}, false
	}
	line := lineAround(s, mStart, mStart+len(match))
	if sr.allowed(sr.global, secret, match, line) || sr.allowed(r.Allowlists, secret, match, line) {
		return Finding{}, false
	}
	off := strings.Index(match, secret)
	if off < 0 || secret == "" {
		off, secret = 0, match
	}
	return Finding{Category: CategorySecret, Rule: r.RuleID, Score: 0.99, Start: mStart + off, End: mStart + off + len(secret)}, true
}

// allowed applies allowlists as gitleaks does for a finding without a
// commit or a path: with the AND condition every configured criterion
// must hold (a commit or path criterion cannot), with OR a regex or a stop
// word suffices.
func (sr *SecretRules) allowed(lists []*config.Allowlist, secret, match, line string) bool {
	for _, a := range lists {
		target := secret
		switch a.RegexTarget {
		case "match":
			target = match
		case "line":
			target = line
		}
		regexOK := a.RegexAllowed(target)
		stop := sr.containsStopWord(a, secret)
		if a.MatchCondition == config.AllowlistMatchAnd {
			if len(a.Commits) > 0 || len(a.Paths) > 0 {
				continue
			}
			ok := len(a.Regexes) > 0 || len(a.StopWords) > 0
			if len(a.Regexes) > 0 {
				ok = ok && regexOK
			}
			if len(a.StopWords) > 0 {
				ok = ok && stop
			}
			if ok {
				return true
			}
			continue
		}
		if regexOK || stop {
			return true
		}
	}
	return false
}

func shannonEntropy(s string) float64 {
	if s == "" {
		return 0
	}
	var counts [256]int
	for i := 0; i < len(s); i++ {
		counts[s[i]]++
	}
	var h float64
	n := float64(len(s))
	for _, c := range counts {
		if c > 0 {
			p := float64(c) / n
			h -= p * math.Log2(p)
		}
	}
	return h
}

// lineAround is the line holding [b, e).
func lineAround(s string, b, e int) string {
	ls := strings.LastIndexByte(s[:b], '\n') + 1
	le := strings.IndexByte(s[e:], '\n')
	if le < 0 {
		return s[ls:]
	}
	return s[ls : e+le]
}

// boundaryBefore moves i back (at most 64 bytes) to just after a
// separator, so that a window never starts inside a token, where anchors
// and \b would see a false edge.
func boundaryBefore(s string, i int) int {
	for j := i; j > 0 && i-j < 64; j-- {
		if isSeparator(s[j-1]) {
			return j
		}
	}
	return i
}

// boundaryAfter moves i forward (at most 64 bytes) to a separator.
func boundaryAfter(s string, i int) int {
	for j := i; j < len(s) && j-i < 64; j++ {
		if isSeparator(s[j]) {
			return j
		}
	}
	return min(i+64, len(s))
}

func isSeparator(c byte) bool {
	switch c {
	case ' ', '\n', '\r', '\t', '"', '\'', '`', ',', ';', '{', '}', '[', ']', '<', '>':
		return true
	}
	return false
}

// dedupeSpans drops findings whose span repeats an earlier one's (the
// same secret matched by two windows of one rule).
func dedupeSpans(fs []Finding) []Finding {
	out := fs[:0]
	for _, f := range fs {
		dup := false
		for k := len(out) - 1; k >= 0 && out[k].Start == f.Start; k-- {
			if out[k].End == f.End && out[k].Rule == f.Rule {
				dup = true
				break
			}
		}
		if !dup {
			out = append(out, f)
		}
	}
	return out
}

// maxMatchLen is the longest match of the regular expression src in
// bytes, or -1 when it is unbounded (a star, plus or open repeat) or longer
// than 4 KiB. Case-folded literals and non-ASCII classes count the widest
// UTF-8 encoding.
func maxMatchLen(src string) int {
	re, err := syntax.Parse(src, syntax.Perl)
	if err != nil {
		return -1
	}
	n := maxLen(re.Simplify())
	if n > 4096 {
		return -1
	}
	return n
}

func maxLen(re *syntax.Regexp) int {
	switch re.Op {
	case syntax.OpLiteral:
		n := 0
		for _, r := range re.Rune {
			if re.Flags&syntax.FoldCase != 0 || r >= utf8.RuneSelf {
				n += utf8.UTFMax
			} else {
				n++
			}
		}
		return n
	case syntax.OpCharClass:
		for _, r := range re.Rune {
			if r >= utf8.RuneSelf {
				return utf8.UTFMax
			}
		}
		if re.Flags&syntax.FoldCase != 0 {
			return utf8.UTFMax
		}
		return 1
	case syntax.OpAnyChar, syntax.OpAnyCharNotNL:
		return utf8.UTFMax
	case syntax.OpCapture, syntax.OpQuest:
		return maxLen(re.Sub[0])
	case syntax.OpStar, syntax.OpPlus:
		return 1 << 30
	case syntax.OpRepeat:
		if re.Max < 0 {
			return 1 << 30
		}
		return min(re.Max*maxLen(re.Sub[0]), 1<<30)
	case syntax.OpConcat:
		n := 0
		for _, sub := range re.Sub {
			n = min(n+maxLen(sub), 1<<30)
		}
		return n
	case syntax.OpAlternate:
		n := 0
		for _, sub := range re.Sub {
			n = max(n, maxLen(sub))
		}
		return n
	}
	return 0 // empty matches and assertions
}

// anchoredRule is a rule whose every match begins with one of its
// keywords: its regex anchored at the start, and whether the original
// requires a word boundary there (checked against the byte before).
type anchoredRule struct {
	re        *regexp.Regexp
	wordStart bool
}

// anchoredAtKeyword returns src anchored at the start when every match of
// src must begin with one of keywords (compared ASCII case-insensitively,
// as the keyword scan does), else nil. Only a word boundary may come
// before the leading literal.
func anchoredAtKeyword(src string, keywords []string) *anchoredRule {
	re, err := syntax.Parse(src, syntax.Perl)
	if err != nil || len(keywords) == 0 {
		return nil
	}
	re = re.Simplify()
	wordStart, ok := leadingAssertion(re)
	if !ok {
		return nil
	}
	leads := leadingLiterals(re)
	if len(leads) == 0 {
		return nil
	}
	for _, l := range leads {
		ok := false
		for _, k := range keywords {
			ok = ok || strings.HasPrefix(l, strings.ToLower(k))
		}
		if !ok {
			return nil
		}
	}
	a, err := regexp.Compile(`^(?:` + src + `)`)
	if err != nil {
		return nil
	}
	return &anchoredRule{re: a, wordStart: wordStart}
}

// leadingAssertion reports whether re begins with \b, and false in ok
// when it begins with any other assertion (^, \A, \B) the anchoring
// would change.
func leadingAssertion(re *syntax.Regexp) (wordStart, ok bool) {
	for {
		switch re.Op {
		case syntax.OpCapture:
			re = re.Sub[0]
			continue
		case syntax.OpConcat:
			for _, sub := range re.Sub {
				switch sub.Op {
				case syntax.OpWordBoundary:
					wordStart = true
					continue
				case syntax.OpBeginLine, syntax.OpBeginText, syntax.OpNoWordBoundary, syntax.OpEmptyMatch:
					return false, false
				case syntax.OpCapture, syntax.OpConcat:
					w, ok := leadingAssertion(sub)
					return wordStart || w, ok
				}
				return wordStart, true
			}
			return wordStart, true
		case syntax.OpWordBoundary:
			return true, true
		case syntax.OpBeginLine, syntax.OpBeginText, syntax.OpNoWordBoundary:
			return false, false
		}
		return false, true
	}
}

// isWordByte is \w for ASCII (gitleaks' \b is ASCII).
func isWordByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_'
}

// leadingLiterals are the literals, lower-cased, one of which every match
// of re begins with (nil when that cannot be told).
func leadingLiterals(re *syntax.Regexp) []string {
	switch re.Op {
	case syntax.OpLiteral:
		for _, r := range re.Rune {
			if r >= utf8.RuneSelf {
				return nil
			}
		}
		return []string{strings.ToLower(string(re.Rune))}
	case syntax.OpCapture:
		return leadingLiterals(re.Sub[0])
	case syntax.OpConcat:
		for _, sub := range re.Sub {
			switch sub.Op {
			case syntax.OpBeginLine, syntax.OpBeginText, syntax.OpWordBoundary, syntax.OpNoWordBoundary, syntax.OpEmptyMatch:
				continue
			}
			return leadingLiterals(sub)
		}
	case syntax.OpAlternate:
		var out []string
		for _, sub := range re.Sub {
			l := leadingLiterals(sub)
			if l == nil {
				return nil
			}
			out = append(out, l...)
		}
		return out
	}
	return nil
}
