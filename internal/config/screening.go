package config

import (
	"fmt"
	"slices"

	"github.com/portcullis-dev/portcullis/internal/screen"
)

// Screening configures content screening: which detections get which
// action (docs/screening.md). Leaving it out applies screen.DefaultRules.
type Screening struct {
	// Rules are tried in order for each detection; the first match
	// decides. Nil: the default rules. An empty list: detect nothing
	// (upstreams' redact settings still apply).
	Rules *[]screen.Rule `json:"rules,omitempty"`
}

// ScreeningRules are the rules in force: each upstream's redact list
// first (masking those personal-data types in its results), then the
// configured rules or the defaults.
func (c *Config) ScreeningRules() []screen.Rule {
	var rules []screen.Rule
	for _, u := range c.Upstreams {
		if len(u.Redact) > 0 {
			rules = append(rules, screen.Rule{Category: screen.CategoryPersonal, Direction: screen.DirResult,
				Types: slices.Clone(u.Redact), Upstreams: []string{u.Name}, Action: screen.ActionRedact})
		}
	}
	if c.Screening.Rules == nil {
		return append(rules, screen.DefaultRules()...)
	}
	return append(rules, *c.Screening.Rules...)
}

func (s *Screening) validate(upstreams map[string]bool) []error {
	if s.Rules == nil {
		return nil
	}
	var errs []error
	for i, r := range *s.Rules {
		at := fmt.Sprintf("screening.rules[%d]", i)
		if err := r.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", at, err))
		}
		for _, u := range r.Upstreams {
			if !upstreams[u] {
				errs = append(errs, fmt.Errorf("%s.upstreams: %q is not a configured upstream", at, u))
			}
		}
		if r.Category == screen.CategoryPersonal {
			for _, t := range r.Types {
				if !slices.Contains(RedactCategories, t) {
					errs = append(errs, fmt.Errorf("%s.types: %q is not a personal-data type %v", at, t, RedactCategories))
				}
			}
		}
		errs = append(errs, validLabels(at+".labels", r.Labels)...)
	}
	return errs
}
