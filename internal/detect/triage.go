package detect

import (
	"fmt"
	"slices"
	"strings"
)

// Verdicts of triage.
const (
	Benign     = "benign"
	Suspicious = "suspicious"
	Malicious  = "malicious"
)

// Evidence is what triage gathers about an alert before deciding: the
// session's recent decisions, labels and screening findings, and the
// agent's other alerts of the last hour.
type Evidence struct {
	Decisions     int      // decisions of the session looked at
	Denied        int      // of them, denied
	Tools         []string // distinct tools the session called or tried
	Labels        []string // data-flow labels the session acquired
	Findings      []string // screening findings in the session ("prompt_injection", "secret", ...)
	RelatedAlerts []string // classes of the agent's other alerts in the last hour
}

// Report is triage's disposition: query (the evidence) -> think (the
// reasons) -> report (verdict, confidence, recommended response).
type Report struct {
	Verdict     string
	Confidence  float64
	Recommended string // a response action (config.ResponseActions)
	Reasons     []string
}

// Triage is the deterministic first pass every alert gets: rules over
// the evidence, before a person sees it.
func Triage(a Alert, ev Evidence) Report {
	var reasons []string
	injected := slices.Contains(ev.Findings, "prompt_injection")
	untrusted := slices.Contains(ev.Labels, "untrusted_input")
	classes := map[string]bool{a.Class: true}
	for _, c := range ev.RelatedAlerts {
		classes[c] = true
	}
	if injected {
		reasons = append(reasons, "the session read content flagged as prompt injection")
	}
	if untrusted {
		reasons = append(reasons, "the session read untrusted input before")
	}
	if len(classes) > 1 {
		reasons = append(reasons, fmt.Sprintf("the agent raised %d classes of alert within the hour", len(classes)))
	}
	if ev.Decisions > 0 {
		reasons = append(reasons, fmt.Sprintf("%d of the session's last %d decisions were denials", ev.Denied, ev.Decisions))
	}
	probing := a.Class == UnexpectedTool || a.Class == DenialBurst || a.Class == CredentialAccess || a.Class == LateralMovement || a.Class == Anomaly
	switch {
	case a.Class == Drift:
		return Report{Suspicious, 0.5, "flag", append(reasons, "a slow change of behaviour: review whether it is legitimate; if not, restore the last known-good baseline")}
	case probing && (injected || untrusted):
		return Report{Malicious, 0.9, "revoke_agent", append(reasons, "behaviour outside the role after reading attacker-controllable content: consistent with a hijacked agent")}
	case len(classes) > 1 && (probing || classes[Rate]):
		return Report{Malicious, 0.75, "terminate_session", append(reasons, "several kinds of deviation together")}
	case a.Class == OffHours && ev.Denied == 0 && len(classes) == 1:
		return Report{Benign, 0.6, "flag", append(reasons, "off-hours use alone, with nothing denied")}
	case a.Class == DenialBurst:
		return Report{Suspicious, 0.7, "terminate_session", append(reasons, "probing for what it may call")}
	case a.Class == CredentialAccess:
		return Report{Suspicious, 0.75, "terminate_session", append(reasons, "secrets gathered from several sources: credential hunting")}
	case a.Class == LateralMovement:
		return Report{Suspicious, 0.7, "terminate_session", append(reasons, "a delegation outside the delegator's expected ones")}
	case a.Class == EgressViolation:
		return Report{Suspicious, 0.75, "quarantine_upstream", append(reasons, "a tool server reaching for a destination it was not given: a compromised or malicious server, or a list to extend")}
	}
	return Report{Suspicious, 0.5, "read_only", append(reasons, "a single deviation without corroboration")}
}

// Summary renders a report for the audit record.
func (r Report) Summary() string {
	return fmt.Sprintf("%s (confidence %.2f), recommend %s: %s", r.Verdict, r.Confidence, r.Recommended, strings.Join(r.Reasons, "; "))
}
