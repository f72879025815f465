package gateway

import (
	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/screen"
)

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
