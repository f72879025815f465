package config

import (
	"fmt"
	"path"
	"regexp"
	"slices"
	"strconv"
	"time"
	_ "time/tzdata" // timezones of active hours, whatever the host has
)

// Detection configures behavioural monitoring: what agents are declared
// to do, and how the gateway answers a deviation.
type Detection struct {
	Baselines []Baseline     `json:"baselines,omitempty"`
	Learning  *Learning      `json:"learning,omitempty"`
	Triage    *Triage        `json:"triage,omitempty"`
	Response  []ResponseRule `json:"response,omitempty"`
	// Notify is the webhook response rules with notify send their alert
	// and step to (JSON).
	Notify *WebhookExport `json:"notify,omitempty"`
}

// Triage selects the model-backed triage backend (absent: the
// deterministic one only). The triage agent investigates each alert with
// Anthropic's Messages API and the read-only evidence tools of a
// `builtin: evidence` upstream, reached through the gateway under its own
// identity and policy.
type Triage struct {
	// Model is the Messages API model name.
	Model string `json:"model"`
	// BaseURL is the Messages API's origin (default Anthropic's); plain
	// http only to a loopback address.
	BaseURL string `json:"base_url,omitempty"`
	// APIKey is the API key (from the secret store, the environment or a
	// file).
	APIKey *Value `json:"api_key"`
	// Agent is the configured agent triage acts as (its policy decides
	// which evidence tools it sees).
	Agent string `json:"agent"`
	// MaxTurns bounds the model calls per alert (default 8).
	MaxTurns int `json:"max_turns,omitempty"`
	// Timeout bounds one alert's triage (default 60s); past it, the
	// deterministic report stands.
	Timeout Duration `json:"timeout,omitempty"`
}

// Learning turns on learned baselines (per agent and per role, from the
// decisions the gateway sees) and drift detection; absent: off.
type Learning struct {
	// MinObservations is the learning period: decisions a profile learns
	// before it scores (default 200).
	MinObservations int `json:"min_observations,omitempty"`
	// Sensitivity is the z-score above which a rate deviates, and sets
	// the improbability (10^-(sensitivity+2)) at which a session's tool mix
	// or denials do (default 4; lower is more sensitive).
	Sensitivity float64 `json:"sensitivity,omitempty"`
	// Threshold is the summed score of the deviating metrics that raises
	// an anomaly alert (default 1).
	Threshold float64 `json:"threshold,omitempty"`
	// Window is the drift window, after which counts decay and the window
	// is compared with the reference (default 24h).
	Window Duration `json:"window,omitempty"`
	// DriftThreshold is the Page-Hinkley limit (default 0.3).
	DriftThreshold float64 `json:"drift_threshold,omitempty"`
	// SyncInterval is how often the learned state is saved to the store,
	// and an operator's restore picked up (default 10s).
	SyncInterval Duration `json:"sync_interval,omitempty"`
}

// Baseline is what an agent (or every agent of a role) is declared to do.
type Baseline struct {
	Agent string `json:"agent,omitempty"`
	Role  string `json:"role,omitempty"`
	// Tools are the qualified tool names it is expected to call (path
	// patterns: "files__read_*"); empty: any.
	Tools []string `json:"tools,omitempty"`
	// DelegatesTo are the agents (path patterns) it is expected to
	// delegate to (an agent's baseline only); empty: any. An agent acting
	// on its delegation otherwise raises lateral_movement.
	DelegatesTo []string `json:"delegates_to,omitempty"`
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
	// Action is flag (the alert only), require_approval (the session's
	// calls of tools not classified read_only wait for a reviewer),
	// read_only (the session may call read-only tools only),
	// terminate_session (the session is refused everything), revoke_task
	// (the alert's task tree is revoked) or revoke_agent (the agent's
	// credentials are revoked and its sessions refused).
	Action string `json:"action"`
	// Automatic lets a high-impact step (revoke_task, revoke_agent,
	// quarantine_upstream) happen without a reviewer. By default it waits
	// for one (the approval workflow: `portcullis approvals approve`)
	// while the session is terminated.
	Automatic bool `json:"automatic,omitempty"`
	// Notify sends the alert and the step taken to detection.notify.
	Notify bool `json:"notify,omitempty"`
}

// Alert classes and response actions (internal/detect documents them).
var (
	AlertClasses    = []string{"unexpected_tool", "denial_burst", "rate", "off_hours", "credential_access", "lateral_movement", "anomaly", "drift", "egress_violation"}
	ResponseActions = []string{"flag", "require_approval", "read_only", "terminate_session", "revoke_task", "revoke_agent", "quarantine_upstream"}
	severities      = []string{"low", "medium", "high"}
)

var hoursRE = regexp.MustCompile(`^([01][0-9]|2[0-3]):([0-5][0-9])-([01][0-9]|2[0-3]):([0-5][0-9])$`)

// ParseHours reads active hours "HH:MM-HH:MM" as minutes after midnight.
func ParseHours(s string) (from, to int, err error) {
	m := hoursRE.FindStringSubmatch(s)
	if m == nil {
		return 0, 0, fmt.Errorf("%q is not HH:MM-HH:MM", s)
	}
	// Decimal: fmt.Sscan would read "08" and "09" as octal (0).
	var n [4]int
	for i := range n {
		n[i], _ = strconv.Atoi(m[i+1]) // two digits, by the pattern
	}
	return n[0]*60 + n[1], n[2]*60 + n[3], nil
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
		if len(b.DelegatesTo) > 0 && b.Agent == "" {
			add("%s.delegates_to: an agent's baseline only (a delegation names its agent)", at)
		}
		for _, p := range b.DelegatesTo {
			if _, err := path.Match(p, ""); err != nil || p == "" {
				add("%s.delegates_to: %q is not a pattern", at, p)
			}
		}
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
	if l := d.Learning; l != nil {
		if l.MinObservations < 0 || l.Sensitivity < 0 || l.Threshold < 0 || l.DriftThreshold < 0 || l.Window < 0 || l.SyncInterval < 0 {
			add("detection.learning: values must not be negative")
		}
		if l.Window != 0 && l.Window.D() < time.Minute {
			add("detection.learning.window: at least 1m")
		}
		if l.SyncInterval != 0 && l.SyncInterval.D() < 100*time.Millisecond {
			add("detection.learning.sync_interval: at least 100ms")
		}
	}
	if tr := d.Triage; tr != nil {
		if tr.Model == "" {
			add("detection.triage.model: required")
		}
		if tr.APIKey == nil {
			add("detection.triage.api_key: required (from_secret, from_env or from_file)")
		}
		if _, ok := c.Agent(tr.Agent); !ok {
			add("detection.triage.agent: %q is not a configured agent", tr.Agent)
		}
		if tr.BaseURL != "" {
			if !SecureURL(tr.BaseURL) {
				add("detection.triage.base_url: %q is not an https URL (or http to a loopback address)", tr.BaseURL)
			}
		}
		if tr.MaxTurns < 0 || tr.MaxTurns > 50 || tr.Timeout < 0 {
			add("detection.triage: max_turns in 0..50, timeout not negative")
		}
		if c.Listen.TLS.Enabled {
			add("detection.triage: the triage agent reaches the gateway over plain HTTP on its own listener; not yet with listen.tls.enabled")
		}
	}
	if d.Notify != nil {
		errs = append(errs, d.Notify.validate("detection.notify")...)
	}
	for i, r := range d.Response {
		at := fmt.Sprintf("detection.response[%d]", i)
		if !slices.Contains(ResponseActions, r.Action) {
			add("%s.action: %q is not one of %v", at, r.Action, ResponseActions)
		}
		if r.Automatic && !HighImpact(r.Action) {
			add("%s.automatic: only revocations and quarantine_upstream wait for a reviewer; the other steps are always automatic", at)
		}
		if r.Notify && d.Notify == nil {
			add("%s.notify: needs detection.notify (the webhook)", at)
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

// HighImpact reports whether a response action waits for a reviewer
// unless its rule is automatic.
func HighImpact(action string) bool {
	return action == "revoke_task" || action == "revoke_agent" || action == "quarantine_upstream"
}
