package audit

import (
	"net"
	"strings"

	"github.com/portcullis-dev/portcullis/internal/reason"
)

// OCSF mapping (schema 1.3). docs/audit-events.md documents it. Each event
// maps to one class; the full Portcullis event rides along in "unmapped" so
// nothing is lost.

// OCSF classes used.
const (
	ocsfAuthentication       = 3002 // Identity & Access Management: Authentication
	ocsfAPIActivity          = 6003 // Application Activity: API Activity
	ocsfApplicationLifecycle = 6002 // Application Activity: Application Lifecycle
	ocsfDetectionFinding     = 2004 // Findings: Detection Finding
	ocsfNetworkActivity      = 4001 // Network Activity: Network Activity
	ocsfVersion              = "1.3.0"
)

// OCSF returns e as an OCSF event object.
func OCSF(e *Event) map[string]any {
	class, category, activity, activityName := classify(e)
	status, statusID := "Success", 1
	severity := 1 // informational
	switch e.Outcome {
	case OutcomeDeny:
		status, statusID, severity = "Failure", 2, 3 // medium
	case OutcomeError:
		status, statusID, severity = "Failure", 2, 4 // high
	case OutcomeInfo:
		status, statusID = "Other", 99
	}
	o := map[string]any{
		"class_uid":     class,
		"category_uid":  category,
		"activity_id":   activity,
		"activity_name": activityName,
		"type_uid":      class*100 + activity,
		"time":          e.Time.UnixMilli(),
		"severity_id":   severity,
		"status":        status,
		"status_id":     statusID,
		"metadata": map[string]any{
			"version":         ocsfVersion,
			"product":         map[string]any{"name": "Portcullis", "vendor_name": "Portcullis"},
			"uid":             e.Seq,
			"correlation_uid": e.RequestID,
			"event_code":      e.Type,
		},
		"unmapped": e,
	}
	if e.Code != "" {
		o["status_detail"] = e.Code
	}
	if e.Agent != "" {
		user := map[string]any{"name": e.Agent, "type": "Other", "type_id": 99}
		if e.Credential != "" {
			user["credential_uid"] = e.Credential
		}
		actor := map[string]any{"user": user}
		if e.SessionID != "" {
			actor["session"] = map[string]any{"uid": e.SessionID}
		}
		o["actor"] = actor
		if class == ocsfAuthentication {
			o["user"] = user
		}
	}
	if e.Method != "" {
		o["api"] = map[string]any{"operation": e.Method, "request": map[string]any{"uid": e.RequestID}}
	}
	if e.Target != "" {
		o["resources"] = []map[string]any{{"name": e.Target, "type": e.Action, "group": map[string]any{"name": e.Upstream}}}
	}
	if e.RemoteAddr != "" {
		o["src_endpoint"] = map[string]any{"ip": hostOf(e.RemoteAddr)}
	}
	if e.TraceID != "" {
		o["trace"] = map[string]any{"uid": e.TraceID}
	}
	if e.PolicyVersion != "" || len(e.Policies) > 0 {
		o["policy"] = map[string]any{"version": e.PolicyVersion, "name": strings.Join(e.Policies, ",")}
	}
	if e.Detail != "" {
		o["message"] = e.Detail
	}
	if class == ocsfDetectionFinding {
		finding(o, e)
	}
	return o
}

// finding fills a Detection Finding: the alert, its severity and the
// techniques it may indicate.
func finding(o map[string]any, e *Event) {
	info := map[string]any{"uid": e.Alert, "title": string(e.Code), "types": []string{string(e.Type)}}
	if e.Type == TypeAlert {
		info["analytic"] = map[string]any{"name": "declared baseline", "type": "Rule", "type_id": 1}
	}
	o["finding_info"] = info
	switch e.Severity {
	case "low":
		o["severity_id"] = 2
	case "medium":
		o["severity_id"] = 3
	case "high":
		o["severity_id"] = 4
	}
	var attacks []map[string]any
	for _, t := range e.Techniques {
		attacks = append(attacks, map[string]any{"technique": map[string]any{"uid": t}})
	}
	if attacks != nil {
		o["attacks"] = attacks
	}
	if e.Type == TypeTriage {
		o["disposition"] = string(e.Code) // benign, suspicious, malicious
	}
}

func classify(e *Event) (class, category, activity int, name string) {
	switch e.Type {
	case TypeAuthn:
		return ocsfAuthentication, 3, 1, "Logon"
	case TypeToken:
		return ocsfAuthentication, 3, 99, "Token Issued"
	case TypeAlert:
		return ocsfDetectionFinding, 2, 1, "Create"
	case TypeTriage, TypeResponse:
		return ocsfDetectionFinding, 2, 2, "Update"
	case TypeAlertState:
		if e.Code == reason.AlertResolved {
			return ocsfDetectionFinding, 2, 3, "Close"
		}
		return ocsfDetectionFinding, 2, 2, "Update"
	case TypeEgress:
		switch e.Code {
		case reason.EgressAllowed:
			return ocsfNetworkActivity, 4, 1, "Open"
		case reason.EgressClosed:
			return ocsfNetworkActivity, 4, 2, "Close"
		case reason.EgressRefused, reason.EgressCut:
			return ocsfNetworkActivity, 4, 5, "Refuse"
		case reason.EgressSuppressed:
			return ocsfNetworkActivity, 4, 99, "Suppressed"
		}
		return ocsfNetworkActivity, 4, 4, "Fail"
	case TypeUpstream, TypeLifecycle, TypeRetention:
		switch e.Code {
		case reason.Started:
			return ocsfApplicationLifecycle, 6, 3, "Start"
		case reason.Stopped:
			return ocsfApplicationLifecycle, 6, 4, "Stop"
		}
		return ocsfApplicationLifecycle, 6, 99, string(e.Code)
	}
	// decisions, server requests and protocol refusals
	switch e.Action {
	case "read_resource", "get_prompt", "list":
		return ocsfAPIActivity, 6, 2, "Read"
	}
	return ocsfAPIActivity, 6, 99, e.Action
}

func hostOf(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}
