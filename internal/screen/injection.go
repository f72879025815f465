package screen

import (
	"regexp"
	"sort"
	"sync"
)

// Detector categories. A Finding's Rule says which pattern, model or
// gitleaks rule produced it.
const (
	CategoryInjection    = "prompt_injection"
	CategorySecret       = "secret"
	CategoryExfiltration = "exfiltration"
	CategoryPersonal     = "personal_data"
)

// Injection rules: the techniques the patterns know, and the classifier.
const (
	RuleOverride    = "override"       // ignore/disregard the previous instructions
	RuleNewOrders   = "new_orders"     // "new instructions:", "from now on"
	RuleRoleMarker  = "role_marker"    // chat-template and system tags smuggled into data
	RuleAddressed   = "addressed"      // text speaking to the AI model that reads it
	RuleConcealment = "concealment"    // do not tell the user
	RuleUrgency     = "urgency_tag"    // <IMPORTANT>, IMPORTANT!!!
	RuleToolSteer   = "tool_steering"  // instructions about calling tools
	RuleSensitive   = "sensitive_path" // SSH keys, credential files, env files
	RuleClassifier  = "classifier"
)

// injectionPatterns are known techniques, written against normalised,
// case-folded text. Each is a technique, not a phrase from a corpus: the
// phrase lists are the verbs and nouns of the technique.
var injectionPatterns = []struct {
	rule     string
	score    float32
	keywords []string // the regex runs only near one of these (case-folded)
	re       *regexp.Regexp
}{
	{RuleOverride, 0.97, []string{"ignore", "disregard", "forget", "override", "bypass", "skip", "abandon", "drop"}, regexp.MustCompile(`(?i)\b(?:ignore|disregard|forget|override|bypass|skip|abandon|drop)\b[^.\n]{0,40}?\b(?:previous|prior|above|earlier|preceding|former|original|all|any|your|the|these|those|other)\b[^.\n]{0,30}?\b(?:instructions?|directions?|directives?|prompts?|rules|guidelines|guidance|context|messages?|tasks?|constraints|commands?|orders)\b`)},
	{RuleNewOrders, 0.93, []string{"instruction", "task", "directive", "orders", "objective", "goal", "from now on"}, regexp.MustCompile(`(?i)\b(?:new|updated|real|actual|true|revised|additional|secret|hidden)\s+(?:instructions?|tasks?|directives?|orders|objective|goal)\s*(?:[:\-]|are\b|is\b)|\bfrom now on\b[^.\n]{0,20}\byou\b|\byour (?:new|real|actual|true) (?:task|goal|instructions?|purpose|objective)\b`)},
	{RuleRoleMarker, 0.96, []string{"<|", "[inst", "[/inst", "[sys", "[/sys", "<<sys", "<< sys", "<system", "</system", "<instruction", "</instruction", "<admin", "</admin", "<developer", "</developer", "<secret", "</secret", "<hidden", "</hidden", "##"}, regexp.MustCompile(`(?i)<\|(?:im_start|im_end|system|endoftext|start_header_id|end_header_id|eot_id)\|>|\[/?(?:inst|sys)\]|<<\s*sys\s*>>|</?(?:system|system_prompt|instructions?|admin|developer|secret|hidden)>|(?:\A|\n)\s*#{2,}\s*(?:system|instructions?|new instructions?)\b`)},
	{RuleAddressed, 0.92, []string{"message", "dear", "attention", "hey", "hello", "note to", "to you", "as a", "as an", "you are a", "you are an"}, regexp.MustCompile(`(?i)\b(?:this is an? (?:important |urgent )?message (?:from|for|to) (?:me|you|the (?:ai|assistant|model|agent))|(?:dear|attention|hey|hello|note to (?:the )?)\s*,?\s*(?:ai|assistant|language model|llm|chatbot|agent|model|claude|chatgpt|gpt|gemini)\b|\bto you,? (?:the )?(?:ai|assistant|language model|model|agent)\b|(?:as|you are) an? (?:ai|assistant|language model)[^.\n]{0,30}\b(?:must|should|have to|need to|will)\b)`)},
	{RuleConcealment, 0.94, []string{"tell", "inform", "mention", "notify", "reveal", "alert", "let", "show"}, regexp.MustCompile(`(?i)\b(?:do not|don't|never|without|avoid)\b[^.\n]{0,20}?\b(?:tell|telling|inform|informing|mention|mentioning|notify|notifying|reveal|revealing|alert|alerting|let|letting|show|showing)\b[^.\n]{0,15}?\b(?:the )?(?:user|human|operator|anyone|them|him|her)\b`)},
	{RuleUrgency, 0.9, []string{"important", "urgent", "critical", "mandatory"}, regexp.MustCompile(`(?i)</?important>|\bimportant\s*!{2,}|\b(?:urgent|critical|mandatory)\s*!{2,}`)},
	{RuleToolSteer, 0.9, []string{"using", "calling", "running", "invoking", "executing", "you use", "you call", "call", "use", "invoke", "run"}, regexp.MustCompile(`(?i)\b(?:before|after|instead of|prior to|whenever|when)\s+(?:using|calling|running|invoking|executing|you use|you call)\b[^.\n]{0,60}?\b(?:tool|function|this|any)\b[^.\n]{0,80}?\b(?:must|should|first|always|read|send|call|include|pass|use)\b|\b(?:you must|always|first) (?:call|use|invoke|run)\b[^.\n]{0,40}?\b(?:tool|function)\b`)},
	{RuleSensitive, 0.9, []string{".ssh", ".aws", ".gnupg", ".kube", ".docker", "gcloud", "id_rsa", "id_ed25519", "id_ecdsa", "/etc/passwd", "/etc/shadow", "mcp.json", "claude_desktop_config", ".env", ".netrc", ".pgpass", ".npmrc", ".git-credentials"}, regexp.MustCompile(`(?i)(?:~|\$home|/home/\w+|/root)/\.(?:ssh|aws|gnupg|kube|docker|config/gcloud)\b|\bid_(?:rsa|ed25519|ecdsa)\b|\.aws/credentials\b|/etc/(?:passwd|shadow)\b|\b(?:mcp|claude_desktop_config)\.json\b|\.(?:env|netrc|pgpass|npmrc|git-credentials)\b`)},
}

// DetectInjection finds instructions aimed at the model in s (scan
// normalised text): known techniques by pattern, and the segment the
// classifier scores highest if it reaches the model's threshold. Findings
// are in span order.
func DetectInjection(m *Model, s string) []Finding {
	return withClassifier(m, false, s, InjectionPatterns(s))
}

// withClassifier adds to the pattern findings out of s the classifier's
// best segment (of those the gate points to, or of every segment), if it
// reaches the threshold, and sorts them by span.
func withClassifier(m *Model, every bool, s string, out []Finding) []Finding {
	if m != nil {
		if score, b, e := m.maxSegment(s, every); score >= m.Threshold {
			out = append(out, Finding{Category: CategoryInjection, Rule: RuleClassifier, Score: float64(score), Start: b, End: e})
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Start < out[j].Start })
	return out
}

// InjectionPatterns returns the pattern findings alone (used for tool
// descriptions, where imperative text is normal and the classifier trained
// on tool outputs does not apply).
func InjectionPatterns(s string) []Finding {
	var ps patternScan
	injectionKeywords().scan(s, func(rule, start, end int) { ps.hit(s, rule, start, end) })
	return ps.findings(s)
}

// patternScan gathers, from keyword hits, the windows of s each injection
// pattern runs on.
type patternScan struct {
	wins [16][]window // per pattern
}

func (ps *patternScan) hit(s string, rule, start, end int) {
	ps.wins[rule] = addWindow(ps.wins[rule], max(0, start-patternReach), min(len(s), end+patternReach))
}

// findings runs each pattern on its windows.
func (ps *patternScan) findings(s string) []Finding {
	wins := &ps.wins
	var out []Finding
	for i, p := range injectionPatterns {
		for _, w := range wins[i] {
			for _, loc := range p.re.FindAllStringIndex(s[w.start:w.end], 8) {
				f := Finding{Category: CategoryInjection, Rule: p.rule, Score: float64(p.score), Start: w.start + loc[0], End: w.start + loc[1]}
				if n := len(out); n > 0 && out[n-1].Rule == f.Rule && out[n-1].End > f.Start {
					continue // the same match seen from an overlapping window
				}
				out = append(out, f)
			}
		}
	}
	return out
}

// patternReach bounds how far a pattern extends from its keyword: the
// longest pattern spans about 200 bytes.
const patternReach = 240

var injectionKeywords = sync.OnceValue(func() *keywordIndex { return newKeywordIndex(patternKeywords()) })

// patternKeywords maps each injection pattern's keywords to the patterns
// (by index) that own them.
func patternKeywords() map[string][]int {
	kw := map[string][]int{}
	for i, p := range injectionPatterns {
		for _, w := range p.keywords {
			kw[w] = append(kw[w], i)
		}
	}
	return kw
}

// InjectionScore is the document score used for thresholds and
// evaluation: the highest of the pattern scores and the classifier's best
// segment.
func InjectionScore(m *Model, s string) float64 {
	var best float64
	for _, f := range InjectionPatterns(s) {
		best = max(best, f.Score)
	}
	if m != nil {
		sc, _, _ := m.MaxSegment(s)
		best = max(best, float64(sc))
	}
	return best
}
