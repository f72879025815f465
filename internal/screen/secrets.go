package screen

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"

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
	rules    []config.Rule
	generic  int // index of gitleaks' generic-api-key rule, or -1
	global   []*config.Allowlist
	keywords *keywordIndex
	always   []int // rules without keywords: run on the whole text

	noPrecheck bool // tests: run the generic rule on every keyword hit
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
	cfg, err := vc.Translate()
	if err != nil {
		return nil, fmt.Errorf("screen: gitleaks rules: %w", err)
	}
	sr := &SecretRules{global: cfg.Allowlists, generic: -1}
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
	return sr, nil
}

// Len is the number of rules in use.
func (sr *SecretRules) Len() int { return len(sr.rules) }

// Detect finds secrets in s. Each finding's span is the secret itself
// (the rule's secret group), its Rule the gitleaks rule ID.
func (sr *SecretRules) Detect(s string) []Finding {
	wins := map[int][]window{}
	sr.keywords.scan(s, func(rule, start, end int) {
		if rule == sr.generic && !sr.noPrecheck && !genericPossible(s, end, sr.rules[rule].Entropy) {
			return
		}
		after := secretReachAfter
		if strings.Contains(sr.rules[rule].RuleID, "private-key") {
			after = pemReachAfter
		}
		b, e := boundaryBefore(s, max(0, start-secretReachBefore)), boundaryAfter(s, min(len(s), end+after))
		wins[rule] = addWindow(wins[rule], b, e)
	})
	for _, i := range sr.always {
		wins[i] = []window{{0, len(s)}}
	}
	var out []Finding
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

// detectRule is gitleaks' per-rule decision (detect.detectRule) on one
// window: match, take the secret group, test entropy, apply the global
// and the rule's allowlists.
func (sr *SecretRules) detectRule(r *config.Rule, s string, w window) []Finding {
	text := s[w.start:w.end]
	var out []Finding
	for _, m := range r.Regex.FindAllStringIndex(text, -1) {
		match := strings.Trim(text[m[0]:m[1]], "\n")
		mStart := w.start + m[0] + strings.Index(text[m[0]:m[1]], match)
		secret := match
		if groups := r.Regex.FindStringSubmatch(match); len(groups) >= 2 {
			if r.SecretGroup > 0 {
				if len(groups) <= r.SecretGroup {
					continue
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
			continue
		}
		line := lineAround(s, mStart, mStart+len(match))
		if allowed(sr.global, secret, match, line) || allowed(r.Allowlists, secret, match, line) {
			continue
		}
		off := strings.Index(match, secret)
		if off < 0 || secret == "" {
			off, secret = 0, match
		}
		out = append(out, Finding{Category: CategorySecret, Rule: r.RuleID, Score: 0.99,
			Start: mStart + off, End: mStart + off + len(secret)})
	}
	return out
}

// allowed applies allowlists as gitleaks does for a finding without a
// commit or a path: with the AND condition every configured criterion
// must hold (a commit or path criterion cannot), with OR a regex or a stop
// word suffices.
func allowed(lists []*config.Allowlist, secret, match, line string) bool {
	for _, a := range lists {
		target := secret
		switch a.RegexTarget {
		case "match":
			target = match
		case "line":
			target = line
		}
		regexOK := a.RegexAllowed(target)
		stop, _ := a.ContainsStopWord(secret)
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
