package config

import (
	"fmt"
	"net/url"
	"slices"
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

// Console configures the web console (docs/console.md).
type Console struct {
	// SignIn signs people in through the organisation's identity provider
	// (OpenID Connect, authorization code with PKCE) besides one-time
	// links.
	SignIn *ConsoleSignIn `json:"sign_in,omitempty"`
}

// ConsoleSignIn is the identity provider people sign in to the console
// with. A person is the admin whose identities include the ID token's
// user claim (that admin's roles), or else, named idp:<user>, gets the
// strongest role its groups map to; anyone else is refused.
type ConsoleSignIn struct {
	Issuer       string `json:"issuer"`
	ClientID     string `json:"client_id"`
	ClientSecret *Value `json:"client_secret,omitempty"`
	// RedirectURL is the console's callback as registered at the provider:
	// http(s)://<admin listener>/console/oidc/callback.
	RedirectURL string `json:"redirect_url"`
	// UserClaim names the person (default email, which must be
	// email_verified); GroupsClaim their groups (default groups).
	UserClaim   string `json:"user_claim,omitempty"`
	GroupsClaim string `json:"groups_claim,omitempty"`
	// Groups maps a group to a console role.
	Groups map[string]string `json:"groups,omitempty"`
}

func (c *Console) validate() []error {
	s := c.SignIn
	if s == nil {
		return nil
	}
	var errs []error
	if !SecureURL(s.Issuer) {
		errs = append(errs, fmt.Errorf("console.sign_in.issuer: %q must be https (or http on loopback)", s.Issuer))
	}
	if s.ClientID == "" {
		errs = append(errs, fmt.Errorf("console.sign_in.client_id: required"))
	}
	if u, err := url.Parse(s.RedirectURL); err != nil || u.Path != "/console/oidc/callback" || !SecureURL(s.RedirectURL) {
		errs = append(errs, fmt.Errorf("console.sign_in.redirect_url: %q must be https://<admin listener>/console/oidc/callback (http on loopback only)", s.RedirectURL))
	}
	for g, r := range s.Groups {
		if !slices.Contains(ConsoleRoles, r) {
			errs = append(errs, fmt.Errorf("console.sign_in.groups.%s: %q is not one of %v", g, r, ConsoleRoles))
		}
	}
	return errs
}
