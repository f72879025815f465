package config

import (
	"fmt"
	"regexp"
	"time"
)

// Memory configures the built-in memory (`builtin: memory` upstreams;
// docs/memory.md).
type Memory struct {
	// Shared are the shared scopes operators create: agents name them
	// "shared:NAME" and policy decides who reads and writes them
	// (context.arguments.scope).
	Shared []string `json:"shared,omitempty"`
	// TTL is how long elements live (0: forever), shorter for elements
	// written from untrusted provenance or with findings, and for session
	// scopes.
	TTL MemoryTTL `json:"ttl,omitempty"`
}

// MemoryTTL are times to live by trust.
type MemoryTTL struct {
	Default   Duration `json:"default,omitempty"`
	Untrusted Duration `json:"untrusted,omitempty"`
	Session   Duration `json:"session,omitempty"`
}

// DefaultUntrustedTTL is memory.ttl.untrusted's default: an element that
// is not trusted does not linger.
const DefaultUntrustedTTL = 7 * 24 * time.Hour

var sharedRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,62}$`)

func (m *Memory) validate() []error {
	var errs []error
	seen := map[string]bool{}
	for i, s := range m.Shared {
		if !sharedRE.MatchString(s) || seen[s] {
			errs = append(errs, fmt.Errorf("memory.shared[%d]: %q is not a new name of lower-case letters, digits, '_', '.', '-'", i, s))
		}
		seen[s] = true
	}
	if m.TTL.Default < 0 || m.TTL.Untrusted < 0 || m.TTL.Session < 0 {
		errs = append(errs, fmt.Errorf("memory.ttl: durations must not be negative"))
	}
	return errs
}
