package config

import (
	"fmt"
	"path"
	"regexp"
	"slices"
	"time"
	_ "time/tzdata" // timezones of active hours, whatever the host has
)

// Detection configures behavioural monitoring: what agents are declared
// to do, and how the gateway answers a deviation.
type Detection struct {
	Baselines []Baseline     `json:"baselines,omitempty"`
	Response  []ResponseRule `json:"response,omitempty"`
}

// Baseline is what an agent (or every agent of a role) is declared to do.
type Baseline struct {
	Agent string `json:"agent,omitempty"`
	Role  string `json:"role,omitempty"`
	// Tools are the qualified tool names it is expected to call (path
	// patterns: "files__read_*"); empty: any.
	Tools []string `json:"tools,omitempty"`
	// CallsPerMinute is the most calls a minute that are normal (0: no
	// limit).
	CallsPerMinute int `json:"calls_per_minute,omitempty"`
	// ActiveHours ("07:00-20:00") in Timezone (default UTC) are when it
	// works; empty: always.
	ActiveHours string `json:"active_hours,omitempty"`
	Timezone    string `json:"timezone,omitempty"`
}

// ResponseRule maps alerts to a response action.
type ResponseRule struct {
	// Alerts are the alert classes it answers (empty: any).
	Alerts []string `json:"alerts,omitempty"`
	// MinSeverity is the least severity it answers (default low).
	MinSeverity string `json:"min_severity,omitempty"`
	// Action is flag (the alert only), read_only (the session may call
	// read-only tools only), terminate_session (the session is refused
	// everything) or revoke_agent (the agent's credentials are revoked and
	// its sessions refused).
	Action string `json:"action"`
}

// Alert classes and response actions (internal/detect documents them).
var (
	AlertClasses    = []string{"unexpected_tool", "denial_burst", "rate", "off_hours"}
	ResponseActions = []string{"flag", "read_only", "terminate_session", "revoke_agent"}
	severities      = []string{"low", "medium", "high"}
)

var hoursRE = regexp.MustCompile(`^([01][0-9]|2[0-3]):([0-5][0-9])-([01][0-9]|2[0-3]):([0-5][0-9])$`)

// ParseHours reads active hours "HH:MM-HH:MM" as minutes after midnight.
func ParseHours(s string) (from, to int, err error) {
	m := hoursRE.FindStringSubmatch(s)
	if m == nil {
		return 0, 0, fmt.Errorf("%q is not HH:MM-HH:MM", s)
	}
	var h1, m1, h2, m2 int
	fmt.Sscan(m[1], &h1)
	fmt.Sscan(m[2], &m1)
	fmt.Sscan(m[3], &h2)
	fmt.Sscan(m[4], &m2)
	return h1*60 + m1, h2*60 + m2, nil
}

func (d *Detection) validate(c *Config) []error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	seen := map[string]bool{}
	for i, b := range d.Baselines {
		at := fmt.Sprintf("detection.baselines[%d]", i)
		switch {
		case (b.Agent == "") == (b.Role == ""):
			add("%s: give agent or role, not both", at)
		case b.Agent != "":
			if _, ok := c.Agent(b.Agent); !ok {
				add("%s.agent: %q is not a configured agent", at, b.Agent)
			}
		}
		key := "a:" + b.Agent + "r:" + b.Role
		if seen[key] {
			add("%s: a second baseline for the same agent or role", at)
		}
		seen[key] = true
		for _, p := range b.Tools {
			if _, err := path.Match(p, ""); err != nil || p == "" {
				add("%s.tools: %q is not a pattern", at, p)
			}
		}
		if b.CallsPerMinute < 0 {
			add("%s.calls_per_minute: must not be negative", at)
		}
		if b.ActiveHours != "" {
			if _, _, err := ParseHours(b.ActiveHours); err != nil {
				add("%s.active_hours: %v", at, err)
			}
		}
		if b.Timezone != "" {
			if _, err := time.LoadLocation(b.Timezone); err != nil {
				add("%s.timezone: %v", at, err)
			}
		}
	}
	for i, r := range d.Response {
		at := fmt.Sprintf("detection.response[%d]", i)
		if !slices.Contains(ResponseActions, r.Action) {
			add("%s.action: %q is not one of %v", at, r.Action, ResponseActions)
		}
		for _, cl := range r.Alerts {
			if !slices.Contains(AlertClasses, cl) {
				add("%s.alerts: %q is not one of %v", at, cl, AlertClasses)
			}
		}
		if r.MinSeverity != "" && !slices.Contains(severities, r.MinSeverity) {
			add("%s.min_severity: %q is not one of %v", at, r.MinSeverity, severities)
		}
	}
	return errs
}
