package config

import (
	"fmt"
	"slices"
)

// Screening configures content screening: which detections get which
// action (docs/screening.md). Leaving it out applies the screening
// engine's default rules.
type Screening struct {
	// Rules are tried in order for each detection; the first match
	// decides. Nil: the default rules. An empty list: detect nothing
	// (upstreams' redact settings still apply).
	Rules *[]ScreeningRule `json:"rules,omitempty"`
	// Classifier says which segments of a text the prompt-injection
	// classifier scores: "gated" (the default), those its lexicon points
	// to; "every_segment", all of four words or more, at about twice the
	// classifier's cost on prose, so that no phrasing escapes it by
	// avoiding the gate's marks (docs/model-card-injection.md).
	Classifier string `json:"classifier,omitempty"`
}

// Classifier settings.
const (
	ClassifierGated = "gated"
	ClassifierEvery = "every_segment"
)

// validClassifier reports whether c is a classifier setting, or empty.
func validClassifier(c string) bool {
	return c == "" || c == ClassifierGated || c == ClassifierEvery
}

// ScreeningRule maps detections to an action. It is configuration's form
// of the screening engine's rule (the gateway converts it, and the engine
// checks it again): configuration has its own type so that loading it
// does not link the detectors. The names it accepts are the engine's; a
// test keeps the two vocabularies equal.
type ScreeningRule struct {
	// Category is the detector: prompt_injection, secret, personal_data,
	// exfiltration.
	Category string `json:"category"`
	// Direction limits the rule to arguments or result (empty: both).
	Direction string `json:"direction,omitempty"`
	// Types limits the rule to these finding rules: personal-data types,
	// gitleaks rule IDs, injection techniques or exfiltration rules.
	// Empty: all.
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

// The screening vocabulary: detector categories, directions, actions and
// the personal-data types redaction can mask.
var (
	ScreeningCategories = []string{"prompt_injection", "secret", "personal_data", "exfiltration"}
	ScreeningDirections = []string{"arguments", "result"}
	ScreeningActions    = []string{"allow", "flag", "redact", "block", "label"}
	// RedactCategories are the personal-data types redaction can mask.
	RedactCategories = []string{"email", "payment_card", "iban", "us_ssn", "phone", "ip_address",
		"es_nif", "fi_hetu", "se_personnummer", "ca_sin", "uk_nhs", "in_aadhaar", "tr_tckn", "pl_pesel"}
)

// ScreeningRules are the rules in force: each upstream's redact list first
// (masking those personal-data types in its results), then the configured
// rules. defaults reports that configuration names no rules, so the
// engine's default rules follow these.
func (c *Config) ScreeningRules() (rules []ScreeningRule, defaults bool) {
	for _, u := range c.Upstreams {
		if len(u.Redact) > 0 {
			rules = append(rules, ScreeningRule{Category: "personal_data", Direction: "result",
				Types: slices.Clone(u.Redact), Upstreams: []string{u.Name}, Action: "redact"})
		}
	}
	if c.Screening.Rules == nil {
		return rules, true
	}
	return append(rules, *c.Screening.Rules...), false
}

func (s *Screening) validate(upstreams map[string]bool) []error {
	var errs []error
	if !validClassifier(s.Classifier) {
		errs = append(errs, fmt.Errorf("screening.classifier: %q is not %q or %q", s.Classifier, ClassifierGated, ClassifierEvery))
	}
	if s.Rules == nil {
		return errs
	}
	for i, r := range *s.Rules {
		errs = append(errs, r.validate(fmt.Sprintf("screening.rules[%d]", i), upstreams)...)
	}
	return errs
}

func (r *ScreeningRule) validate(at string, upstreams map[string]bool) []error {
	var errs []error
	add := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf(at+": "+format, a...))
	}
	if !slices.Contains(ScreeningCategories, r.Category) {
		add("category %q is not one of %v", r.Category, ScreeningCategories)
	}
	if r.Direction != "" && !slices.Contains(ScreeningDirections, r.Direction) {
		add("direction %q is not one of %v", r.Direction, ScreeningDirections)
	}
	switch {
	case !slices.Contains(ScreeningActions, r.Action):
		add("action %q is not one of %v", r.Action, ScreeningActions)
	case r.Action == "redact" && r.Direction != "result":
		// Arguments are bound to the decision and to approvals by their
		// digest; masking them would forward what nobody decided on.
		add("action redact applies to results only: set direction: result (block arguments instead)")
	case r.Action == "label" && len(r.Labels) == 0:
		add("action label needs labels")
	}
	if r.MinScore < 0 || r.MinScore > 1 {
		add("min_score %v is outside 0..1", r.MinScore)
	}
	for _, u := range r.Upstreams {
		if !upstreams[u] {
			add("upstreams: %q is not a configured upstream", u)
		}
	}
	if r.Category == "personal_data" {
		for _, t := range r.Types {
			if !slices.Contains(RedactCategories, t) {
				add("types: %q is not a personal-data type %v", t, RedactCategories)
			}
		}
	}
	return append(errs, validLabels(at+".labels", r.Labels)...)
}
