package screen

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Directions content is screened in.
const (
	DirArguments = "arguments" // agent to tool: call and prompt arguments
	DirResult    = "result"    // tool to agent: results, resources
	// DirPrompt is a prompt's messages, tool to agent. They are screened
	// as results, except for injection: a prompt is instructions by design.
	DirPrompt = "prompt"
)

// Actions a screening rule can take on a detection.
const (
	ActionAllow  = "allow"  // let it through, record nothing
	ActionFlag   = "flag"   // let it through, record a screening event
	ActionRedact = "redact" // mask the span before the agent sees it (results only)
	ActionBlock  = "block"  // refuse the call, or withhold the whole result
	ActionLabel  = "label"  // add labels to the session (and record)
)

// Categories are the detector categories rules can name.
var Categories = []string{CategoryInjection, CategorySecret, CategoryPersonal, CategoryExfiltration}

var actions = []string{ActionAllow, ActionFlag, ActionRedact, ActionBlock, ActionLabel}

// Rule maps detections to an action. Rules are tried in order; the first
// that matches a detection decides it. A detection no rule matches is
// allowed.
type Rule struct {
	// Category is the detector: prompt_injection, secret, personal_data,
	// exfiltration.
	Category string `json:"category"`
	// Direction limits the rule to arguments or result (empty: both).
	Direction string `json:"direction,omitempty"`
	// Types limits the rule to these finding rules: personal-data types
	// (email, payment_card, iban, us_ssn, phone, ip_address), gitleaks rule
	// IDs, injection techniques (override, classifier, ...) or exfiltration
	// rules (markdown_image, templated_url, url_payload). Empty: all.
	Types []string `json:"types,omitempty"`
	// Upstreams limits the rule to content from or to these upstreams
	// (empty: all).
	Upstreams []string `json:"upstreams,omitempty"`
	// MinScore ignores detections scoring lower (0: the detector's own
	// threshold).
	MinScore float64 `json:"min_score,omitempty"`
	// Action is allow, flag, redact, block or label.
	Action string `json:"action"`
	// Labels are added to the session by the label action (and by any
	// other action, when given).
	Labels []string `json:"labels,omitempty"`
}

// Validate checks a rule on its own.
func (r *Rule) Validate() error {
	if !slices.Contains(Categories, r.Category) {
		return fmt.Errorf("category %q is not one of %v", r.Category, Categories)
	}
	if r.Direction != "" && r.Direction != DirArguments && r.Direction != DirResult {
		return fmt.Errorf("direction %q is not %q or %q", r.Direction, DirArguments, DirResult)
	}
	if !slices.Contains(actions, r.Action) {
		return fmt.Errorf("action %q is not one of %v", r.Action, actions)
	}
	if r.Action == ActionRedact && r.Direction != DirResult {
		// Arguments are bound to the decision and to approvals by their
		// digest; masking them would forward what nobody decided on.
		return fmt.Errorf("action redact applies to results only: set direction: result (block arguments instead)")
	}
	if r.Action == ActionLabel && len(r.Labels) == 0 {
		return fmt.Errorf("action label needs labels")
	}
	if r.MinScore < 0 || r.MinScore > 1 {
		return fmt.Errorf("min_score %v is outside 0..1", r.MinScore)
	}
	return nil
}

func (r *Rule) matches(dir, upstream string, f *Finding) bool {
	return r.Category == f.Category &&
		(r.Direction == "" || r.Direction == dir) &&
		(len(r.Types) == 0 || slices.Contains(r.Types, f.Rule)) &&
		(len(r.Upstreams) == 0 || slices.Contains(r.Upstreams, upstream)) &&
		f.Score >= r.MinScore
}

// DefaultRules are what screening does when configuration names no rules:
// secrets never leave in arguments and are masked in results; an injected
// instruction marks the session as having read untrusted input (so that
// data-flow policy applies) and is recorded; rendered images and templated
// URLs in results are masked, URL payloads in arguments recorded.
// Personal data is left to configuration.
func DefaultRules() []Rule {
	return []Rule{
		{Category: CategorySecret, Direction: DirArguments, Action: ActionBlock},
		{Category: CategorySecret, Direction: DirResult, Action: ActionRedact},
		{Category: CategoryInjection, Direction: DirResult, Action: ActionLabel, Labels: []string{"untrusted_input", "prompt_injection"}},
		{Category: CategoryInjection, Direction: DirArguments, Action: ActionFlag},
		{Category: CategoryExfiltration, Direction: DirResult, Types: []string{RuleMarkdownImage, RuleTemplatedURL}, Action: ActionRedact},
		{Category: CategoryExfiltration, Action: ActionFlag},
	}
}

// Screener runs the detectors on content and applies the rules.
type Screener struct {
	rules   []Rule
	model   *Model
	secrets *SecretRules
	// need[dir] says which categories any non-allow rule can act on in
	// that direction: detectors nobody listens to do not run.
	need map[string]map[string]bool
	// every: the classifier scores every segment, not only those its
	// gate points to (SetEverySegment); everyFor replaces it for the
	// upstreams it names (SetUpstreamEverySegment).
	every    bool
	everyFor map[string]bool
}

// SetEverySegment makes the injection classifier score every segment of
// four words or more, not only those the lexicon points to (gate.go): no
// phrasing escapes it by avoiding the gate's marks, at about the
// classifier's cost before the gate. Set it before the screener is used.
func (s *Screener) SetEverySegment(on bool) { s.every = on }

// SetUpstreamEverySegment is SetEverySegment for the content of one
// upstream, whatever SetEverySegment says: the operator scores every
// segment where anyone can write the text and keeps the gate elsewhere.
// Set it before the screener is used.
func (s *Screener) SetUpstreamEverySegment(upstream string, on bool) {
	if s.everyFor == nil {
		s.everyFor = map[string]bool{}
	}
	s.everyFor[upstream] = on
}

// NewScreener compiles rules with the embedded classifier and gitleaks'
// default rules. It fails if either cannot be loaded: screening does not
// start without its detectors.
func NewScreener(rules []Rule) (*Screener, error) {
	for i := range rules {
		if err := rules[i].Validate(); err != nil {
			return nil, fmt.Errorf("screening rule %d: %w", i, err)
		}
	}
	m, err := EmbeddedModel()
	if err != nil {
		return nil, err
	}
	sr, err := DefaultSecretRules()
	if err != nil {
		return nil, err
	}
	s := &Screener{rules: rules, model: m, secrets: sr, need: map[string]map[string]bool{}}
	for _, dir := range []string{DirArguments, DirResult} {
		s.need[dir] = map[string]bool{}
		for _, r := range rules {
			if r.Action != ActionAllow && (r.Direction == "" || r.Direction == dir) {
				s.need[dir][r.Category] = true
			}
		}
	}
	return s, nil
}

// Detection is a finding with the action its rule decided.
type Detection struct {
	Finding
	Action string
	Labels []string
	// Located is false when the finding was made in the normalised text
	// (an encoded or obfuscated form) and has no span in the original; a
	// redaction then withholds the whole text.
	Located bool
}

// Verdict is what screening one text decided.
type Verdict struct {
	Detections []Detection // those a rule acted on (never allow)
	Block      bool        // some detection says block
	Withhold   bool        // a redaction could not be located: drop the text
	Labels     []string    // labels to add to the session, sorted
	Steps      []string    // normalisation steps that changed the text
}

// Merge adds o's detections, flags, labels and steps to v: the verdict of
// a message is the merge of its texts' verdicts.
func (v *Verdict) Merge(o Verdict) {
	v.Detections = append(v.Detections, o.Detections...)
	v.Block = v.Block || o.Block
	v.Withhold = v.Withhold || o.Withhold
	for _, l := range o.Labels {
		if !slices.Contains(v.Labels, l) {
			v.Labels = append(v.Labels, l)
		}
	}
	for _, s := range o.Steps {
		if !slices.Contains(v.Steps, s) {
			v.Steps = append(v.Steps, s)
		}
	}
}

// Has reports whether some detection got the action.
func (v *Verdict) Has(action string) bool {
	return slices.ContainsFunc(v.Detections, func(d Detection) bool { return d.Action == action })
}

// Keys are the detections as policy sees them: "category" and
// "category:rule", sorted, without repeats.
func (v *Verdict) Keys() []string {
	var out []string
	for _, d := range v.Detections {
		for _, k := range []string{d.Category, d.Category + ":" + d.Rule} {
			if !slices.Contains(out, k) {
				out = append(out, k)
			}
		}
	}
	sort.Strings(out)
	return out
}

// Redacted returns text with the verdict's located redactions masked.
func (v *Verdict) Redacted(text string) string {
	var spans []Finding
	for _, d := range v.Detections {
		if d.Action == ActionRedact && d.Located {
			spans = append(spans, d.Finding)
		}
	}
	return RedactSpans(text, spans)
}

// RedactSpans masks the spans of fs in text, in any order; overlapping
// spans are masked as one.
func RedactSpans(text string, fs []Finding) string {
	if len(fs) == 0 {
		return text
	}
	spans := slices.Clone(fs)
	sort.Slice(spans, func(i, j int) bool { return spans[i].Start < spans[j].Start })
	// Overlapping spans: keep the earlier, widened to cover the later.
	merged := spans[:1]
	for _, f := range spans[1:] {
		last := &merged[len(merged)-1]
		if f.Start < last.End {
			last.End = max(last.End, f.End)
			continue
		}
		merged = append(merged, f)
	}
	return Redact(text, merged)
}

// Summary describes the detections for an audit record: category, rule
// and action with counts, e.g. "secret/github-pat:redact×2". It never
// holds the content.
func (v *Verdict) Summary() string {
	counts := map[string]int{}
	for _, d := range v.Detections {
		counts[d.Category+"/"+d.Rule+":"+d.Action]++
	}
	parts := make([]string, 0, len(counts))
	for k, n := range counts {
		parts = append(parts, fmt.Sprintf("%s×%d", k, n))
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

// Scan screens one text travelling in direction dir from or to upstream.
func (s *Screener) Scan(dir, upstream, text string) Verdict {
	if !s.Screens(dir) || text == "" {
		return Verdict{}
	}
	return s.ScanNormalized(dir, upstream, text, Normalize(text))
}

// Screens reports whether any rule acts on content in direction dir.
func (s *Screener) Screens(dir string) bool {
	if dir == DirPrompt {
		dir = DirResult
	}
	return len(s.need[dir]) > 0
}

// ScanNormalized is Scan of a text already normalised (n is
// Normalize(text)), so that a caller that needs the normal form too
// (argument provenance) computes it once.
func (s *Screener) ScanNormalized(dir, upstream, text string, n Normalized) Verdict {
	var v Verdict
	prompt := dir == DirPrompt
	if prompt {
		dir = DirResult
	}
	need := s.need[dir]
	if len(need) == 0 || text == "" {
		return v
	}
	v.Steps = n.Steps
	changed := n.Text != text
	var found []Detection
	add := func(fs []Finding, located bool) {
		for _, f := range fs {
			found = append(found, Detection{Finding: f, Located: located})
		}
	}
	injection, secret := need[CategoryInjection] && !prompt, need[CategorySecret]
	var patterns, secrets []Finding // in the normalised text
	switch {
	case injection && secret:
		patterns, secrets = s.secrets.PatternsAndSecrets(n.Text) // one keyword pass for both
	case injection:
		patterns = InjectionPatterns(n.Text)
	case secret:
		secrets = s.secrets.Detect(n.Text)
	}
	if injection {
		every, set := s.everyFor[upstream]
		if !set {
			every = s.every
		}
		add(withClassifier(s.model, every, n.Text, patterns), !changed)
	}
	if secret {
		raw := secrets
		if changed {
			raw = s.secrets.Detect(text)
		}
		add(raw, true)
		if changed {
			add(unlocated(secrets, n.Text, raw, text), false)
		}
	}
	if need[CategoryPersonal] {
		raw := DetectPersonal(text)
		add(raw, true)
		if changed {
			add(unlocated(DetectPersonal(n.Text), n.Text, raw, text), false)
		}
	}
	if need[CategoryExfiltration] {
		add(DetectExfiltration(text), true)
	}
	for _, d := range found {
		for i := range s.rules {
			r := &s.rules[i]
			if !r.matches(dir, upstream, &d.Finding) {
				continue
			}
			if r.Action == ActionAllow {
				break
			}
			d.Action, d.Labels = r.Action, r.Labels
			switch r.Action {
			case ActionBlock:
				v.Block = true
			case ActionRedact:
				if !d.Located {
					v.Withhold = true
				}
			}
			for _, l := range r.Labels {
				if !slices.Contains(v.Labels, l) {
					v.Labels = append(v.Labels, l)
				}
			}
			v.Detections = append(v.Detections, d)
			break
		}
	}
	sort.Strings(v.Labels)
	return v
}

// unlocated returns the findings in the normalised text whose value the
// original does not hold as found: what decoding or de-obfuscation
// revealed.
func unlocated(norm []Finding, normText string, raw []Finding, text string) []Finding {
	var out []Finding
	for _, f := range norm {
		val := normText[f.Start:f.End]
		seen := false
		for _, r := range raw {
			if text[r.Start:r.End] == val {
				seen = true
				break
			}
		}
		if !seen {
			out = append(out, f)
		}
	}
	return out
}
