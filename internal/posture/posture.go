// Package posture answers a security lead's three questions from the
// live configuration, policy bundle and stored data (not from a
// questionnaire): which tier of the framework (Foundation, Enterprise,
// Advanced) each of its 15 capabilities reaches and on what evidence,
// what is missing for the next tier, and how the outcome metrics move.
//
// Each capability's tiers are broken into checks (checks.go), each a
// function of the gathered Facts (facts.go) returning whether it is met
// and the evidence. Tiers are cumulative: a capability reaches a tier
// when every check of that tier and of the tiers below is met. What
// Portcullis cannot do or see (hardware-backed identity, attested
// images) is a check that is never met, saying so: the report never
// claims a tier the product cannot show.
package posture

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Tier is a level of the framework's capability tables.
type Tier int

// Tiers, cumulative.
const (
	None Tier = iota
	Foundation
	Enterprise
	Advanced
)

var tierNames = []string{"none", "F", "E", "A"}

func (t Tier) String() string {
	if t < None || t > Advanced {
		return "?"
	}
	return tierNames[t]
}

// Long is the tier's full name.
func (t Tier) Long() string {
	return [...]string{"none", "Foundation", "Enterprise", "Advanced"}[max(None, min(t, Advanced))]
}

// MarshalJSON writes the tier as its letter ("none" below Foundation).
func (t Tier) MarshalJSON() ([]byte, error) { return json.Marshal(t.String()) }

// UnmarshalJSON reads a tier as ParseTier does.
func (t *Tier) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := ParseTier(s)
	*t = v
	return err
}

// ParseTier reads F, E, A (or their names, any case) and none.
func ParseTier(s string) (Tier, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "f", "foundation":
		return Foundation, nil
	case "e", "enterprise":
		return Enterprise, nil
	case "a", "advanced":
		return Advanced, nil
	case "none", "-":
		return None, nil
	}
	return None, fmt.Errorf("tier %q: want F, E, A (Foundation, Enterprise, Advanced) or none", s)
}

// Capability is one of the framework's 15 capability tables.
type Capability struct {
	ID     string `json:"id"`
	Domain string `json:"domain"`
	Name   string `json:"name"`
}

// Capabilities are the framework's tables, in its order
// (../shared/reference/framework.md §1.3; docs/posture.md).
var Capabilities = []Capability{
	{"identity_verification", "D1 Agent identity and authentication", "Agent identity verification"},
	{"service_authentication", "D1 Agent identity and authentication", "Service authentication"},
	{"permission_models", "D2 Access control and privilege management", "Permission models"},
	{"privilege_scoping", "D2 Access control and privilege management", "Privilege scoping"},
	{"resource_boundaries", "D2 Access control and privilege management", "Resource boundaries"},
	{"action_logging", "D3 Observability and auditing", "Action logging"},
	{"traceability", "D3 Observability and auditing", "Traceability"},
	{"baseline_establishment", "D4 Behavioral monitoring and response", "Baseline establishment"},
	{"anomaly_detection", "D4 Behavioral monitoring and response", "Anomaly detection"},
	{"automated_response", "D4 Behavioral monitoring and response", "Automated response"},
	{"input_sanitization", "D5 Input validation and output controls", "Input sanitization"},
	{"output_filtering", "D5 Input validation and output controls", "Output filtering"},
	{"configuration_integrity", "D6 Integrity and recovery", "Configuration integrity"},
	{"recovery", "D6 Integrity and recovery", "Recovery capabilities"},
	{"governance", "D6 Integrity and recovery", "AI governance policies"},
}

// CapabilityByID finds a capability.
func CapabilityByID(id string) (Capability, bool) {
	i := slices.IndexFunc(Capabilities, func(c Capability) bool { return c.ID == id })
	if i < 0 {
		return Capability{}, false
	}
	return Capabilities[i], true
}

// CheckResult is one check as assessed.
type CheckResult struct {
	ID       string `json:"id"`
	Tier     Tier   `json:"tier"`
	Need     string `json:"need"`
	Met      bool   `json:"met"`
	Evidence string `json:"evidence"`
}

// CapabilityResult is a capability's tier, its evidence and what the next
// tier needs.
type CapabilityResult struct {
	Capability
	Tier Tier `json:"tier"`
	// Target is the tier asked for (--min-tier, a targets file), if any.
	Target Tier `json:"target,omitempty"`
	// Evidence is what the checks of the tiers reached found.
	Evidence []string `json:"evidence"`
	// Missing is what the next tier needs (its unmet checks).
	Missing []string      `json:"missing,omitempty"`
	Checks  []CheckResult `json:"checks"`
}

// Below reports whether the capability is below its target.
func (c CapabilityResult) Below() bool { return c.Target > c.Tier }

// Report is an assessment.
type Report struct {
	Generated     time.Time `json:"generated"`
	Config        string    `json:"config"`
	ConfigSHA256  string    `json:"config_sha256"`
	PolicyVersion string    `json:"policy_version"`
	// Checkpoint is the audit log's latest signed checkpoint the report
	// was computed at (its size and root), if any.
	Checkpoint   *Checkpoint        `json:"checkpoint,omitempty"`
	Capabilities []CapabilityResult `json:"capabilities"`
	Metrics      *Metrics           `json:"metrics,omitempty"`
}

// Checkpoint identifies a state of the audit log.
type Checkpoint struct {
	Size int64     `json:"size"`
	Root string    `json:"root"`
	Time time.Time `json:"time"`
	// Note is the signed checkpoint (C2SP signed note).
	Note string `json:"note,omitempty"`
}

// Assess evaluates every check against f.
func Assess(f *Facts) *Report {
	r := &Report{Generated: f.Now.UTC(), Config: f.ConfigPath, ConfigSHA256: f.ConfigSHA256, PolicyVersion: f.PolicyVersion, Checkpoint: f.Checkpoint, Metrics: f.Metrics}
	for _, c := range Capabilities {
		cr := CapabilityResult{Capability: c, Evidence: []string{}}
		for _, ch := range checks {
			if ch.capability != c.ID {
				continue
			}
			met, ev := ch.eval(f)
			cr.Checks = append(cr.Checks, CheckResult{ID: ch.id, Tier: ch.tier, Need: ch.need, Met: met, Evidence: ev})
		}
		cr.Tier = reached(cr.Checks)
		for _, ch := range cr.Checks {
			switch {
			case ch.Tier == None: // supporting: evidence when met, never missing
				if ch.Met && ch.Evidence != "" {
					cr.Evidence = append(cr.Evidence, ch.Evidence)
				}
			case ch.Tier <= cr.Tier && ch.Evidence != "":
				cr.Evidence = append(cr.Evidence, ch.Evidence)
			case ch.Tier == cr.Tier+1 && !ch.Met:
				m := ch.Need
				if ch.Evidence != "" {
					m += " (now: " + ch.Evidence + ")"
				}
				cr.Missing = append(cr.Missing, m)
			}
		}
		r.Capabilities = append(r.Capabilities, cr)
	}
	return r
}

// reached is the highest tier whose checks, and those of every tier
// below, are all met.
func reached(cs []CheckResult) Tier {
	t := None
	for next := Foundation; next <= Advanced; next++ {
		any := false
		for _, c := range cs {
			if c.Tier == next {
				any = true
				if !c.Met {
					return t
				}
			}
		}
		if !any {
			return t
		}
		t = next
	}
	return t
}

// SetTargets records the tier asked of each capability: all, for every
// one (None: no target), then the per-capability ones.
func (r *Report) SetTargets(all Tier, per map[string]Tier) {
	for i := range r.Capabilities {
		c := &r.Capabilities[i]
		c.Target = all
		if t, ok := per[c.ID]; ok {
			c.Target = t
		}
	}
}

// Below lists the capabilities under their targets.
func (r *Report) Below() []CapabilityResult {
	var out []CapabilityResult
	for _, c := range r.Capabilities {
		if c.Below() {
			out = append(out, c)
		}
	}
	return out
}

// Capability returns the result for id.
func (r *Report) Capability(id string) (CapabilityResult, bool) {
	for _, c := range r.Capabilities {
		if c.ID == id {
			return c, true
		}
	}
	return CapabilityResult{}, false
}

// ParseTargets reads a targets file: a JSON or YAML object of capability
// ID to tier ({"identity_verification": "E", ...}).
func ParseTargets(data map[string]string) (map[string]Tier, error) {
	out := map[string]Tier{}
	for id, s := range data {
		if _, ok := CapabilityByID(id); !ok {
			return nil, fmt.Errorf("targets: %q is not a capability (%s)", id, strings.Join(capabilityIDs(), ", "))
		}
		t, err := ParseTier(s)
		if err != nil {
			return nil, fmt.Errorf("targets: %s: %w", id, err)
		}
		out[id] = t
	}
	return out, nil
}

func capabilityIDs() []string {
	out := make([]string, len(Capabilities))
	for i, c := range Capabilities {
		out[i] = c.ID
	}
	return out
}
