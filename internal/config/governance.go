package config

import (
	"fmt"
	"time"
)

// Governance names the organisation's agent governance: its documents
// (paths or URLs; templates in docs/governance/), who approves agent and
// upstream deployments, and when the policies were last reviewed.
// `portcullis posture` reads it for the governance capability.
type Governance struct {
	AcceptableUse    string   `json:"acceptable_use,omitempty"`
	IncidentResponse string   `json:"incident_response,omitempty"`
	Onboarding       string   `json:"onboarding,omitempty"`
	EmergencyChange  string   `json:"emergency_change,omitempty"`
	Approvers        []string `json:"approvers,omitempty"`
	// Reviewed is the date of the last policy review (YYYY-MM-DD).
	Reviewed string `json:"reviewed,omitempty"`
}

func (g *Governance) validate() []error {
	var errs []error
	if g.Reviewed != "" {
		if _, err := time.Parse(time.DateOnly, g.Reviewed); err != nil {
			errs = append(errs, fmt.Errorf("governance.reviewed: %q is not a date (YYYY-MM-DD)", g.Reviewed))
		}
	}
	for i, a := range g.Approvers {
		if a == "" {
			errs = append(errs, fmt.Errorf("governance.approvers[%d]: empty", i))
		}
	}
	return errs
}
