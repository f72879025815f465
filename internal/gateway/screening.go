package gateway

import (
	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/screen"
)

// newScreener compiles rules with configuration's choice of where the
// injection classifier looks: screening.classifier, replaced for an
// upstream's content by that upstream's classifier.
func newScreener(cfg *config.Config, rules []screen.Rule) (*screen.Screener, error) {
	s, err := screen.NewScreener(rules)
	if err != nil {
		return nil, err
	}
	s.SetEverySegment(cfg.Screening.Classifier == config.ClassifierEvery)
	for _, u := range cfg.Upstreams {
		if u.Classifier != "" {
			s.SetUpstreamEverySegment(u.Name, everySegment(cfg, u))
		}
	}
	return s, nil
}

// newMemoryScreener compiles the built-in memory's rules for the text
// written to it. One memory serves every builtin: memory upstream, so its
// writes are scored on every segment if any of those upstreams' settings
// says so; other upstreams' settings do not apply, whatever their names.
func newMemoryScreener(cfg *config.Config, rules []screen.Rule) (*screen.Screener, error) {
	s, err := screen.NewScreener(rules)
	if err != nil {
		return nil, err
	}
	every, served := false, false
	for _, u := range cfg.Upstreams {
		if u.Builtin == "memory" {
			served = true
			every = every || everySegment(cfg, u)
		}
	}
	s.SetEverySegment(every || !served && cfg.Screening.Classifier == config.ClassifierEvery)
	return s, nil
}

// everySegment reports whether the classifier scores every segment of
// u's content: u's classifier, else screening.classifier.
func everySegment(cfg *config.Config, u config.Upstream) bool {
	c := u.Classifier
	if c == "" {
		c = cfg.Screening.Classifier
	}
	return c == config.ClassifierEvery
}

// classifierExceptions are the upstreams whose classifier setting lowers
// screening.classifier's every_segment to the gate: a choice to log at
// start, since it weakens screening there.
func classifierExceptions(cfg *config.Config) []string {
	if cfg.Screening.Classifier != config.ClassifierEvery {
		return nil
	}
	var names []string
	for _, u := range cfg.Upstreams {
		if !everySegment(cfg, u) {
			names = append(names, u.Name)
		}
	}
	return names
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
