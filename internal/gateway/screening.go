package gateway

import (
	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/screen"
)

// newScreener compiles rules with configuration's choice of where the
// injection classifier looks (screening.classifier, and an upstream's
// classifier for its content): the gateway's screener and memory's share
// it.
func newScreener(cfg *config.Config, rules []screen.Rule) (*screen.Screener, error) {
	s, err := screen.NewScreener(rules)
	if err != nil {
		return nil, err
	}
	s.SetEverySegment(cfg.Screening.Classifier == config.ClassifierEvery)
	for _, u := range cfg.Upstreams {
		if u.Classifier != "" {
			s.SetUpstreamEverySegment(u.Name, u.Classifier == config.ClassifierEvery)
		}
	}
	return s, nil
}

// screeningRules turns configuration's screening rules into the engine's:
// the upstreams' redact rules and the configured rules, or the engine's
// defaults when configuration names none.
func screeningRules(cfg *config.Config) []screen.Rule {
	rules, defaults := cfg.ScreeningRules()
	out := make([]screen.Rule, 0, len(rules))
	for _, r := range rules {
		out = append(out, screen.Rule(r))
	}
	if defaults {
		out = append(out, screen.DefaultRules()...)
	}
	return out
}
