package ops

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/reason"
	"github.com/portcullis-dev/portcullis/internal/store"
)

// Alert states.
const (
	AlertOpen         = "open"
	AlertAcknowledged = "acknowledged"
	AlertResolved     = "resolved"
)

// AlertView is an alert with what followed it: its triage, the response
// steps taken, and its state.
type AlertView struct {
	Alert     *audit.Event
	Triage    *audit.Event   // nil until triaged
	Responses []*audit.Event // steps taken
	States    []*audit.Event // acknowledgements and resolution, oldest first
	State     string
}

// Alerts lists the latest alerts (up to limit), newest first, with their
// state; state filters ("" or "all": every one).
func (o *Ops) Alerts(ctx context.Context, state string, limit int) ([]*AlertView, error) {
	// The newest alert events: all that fit a query, or, for a bounded
	// list, enough for its alerts and what followed them.
	window := store.MaxQueryLimit
	if limit > 0 {
		window = min(store.MaxQueryLimit, max(1000, 8*limit))
	}
	rows, err := o.st.Events(ctx, store.EventQuery{Types: []string{string(audit.TypeAlert), string(audit.TypeTriage), string(audit.TypeResponse), string(audit.TypeAlertState)}, Limit: window, Last: true})
	if err != nil {
		return nil, err
	}
	byID := map[string]*AlertView{}
	var order []*AlertView
	for _, r := range rows {
		e, err := audit.Decode(r)
		if err != nil || e.Alert == "" {
			continue
		}
		v := byID[e.Alert]
		if v == nil {
			v = &AlertView{State: AlertOpen}
			byID[e.Alert] = v
		}
		switch e.Type {
		case audit.TypeAlert:
			v.Alert = e
			order = append(order, v)
		case audit.TypeTriage:
			v.Triage = e
		case audit.TypeResponse:
			v.Responses = append(v.Responses, e)
		case audit.TypeAlertState:
			v.States = append(v.States, e)
			v.State = string(e.Code)
		}
	}
	slices.Reverse(order)
	var out []*AlertView
	for _, v := range order {
		if state == "" || state == "all" || v.State == state {
			out = append(out, v)
		}
		if limit > 0 && len(out) == limit {
			break
		}
	}
	return out, nil
}

// ShowAlert returns one alert (by ID) with what followed it.
func (o *Ops) ShowAlert(ctx context.Context, id string) (*AlertView, error) {
	all, err := o.Alerts(ctx, "all", 0)
	if err != nil {
		return nil, err
	}
	for _, v := range all {
		if v.Alert.Alert == id {
			return v, nil
		}
	}
	return nil, fmt.Errorf("alert %s: not found (among the latest %d alert events)", id, store.MaxQueryLimit)
}

// SetAlertState acknowledges or resolves an alert, audited in the
// person's name.
func (o *Ops) SetAlertState(ctx context.Context, id, state, by, comment string) error {
	if err := attributed(by); err != nil {
		return err
	}
	if state != AlertAcknowledged && state != AlertResolved {
		return fmt.Errorf("alert state %q: want acknowledged or resolved", state)
	}
	v, err := o.ShowAlert(ctx, id)
	if err != nil {
		return err
	}
	if v.State == AlertResolved {
		return fmt.Errorf("alert %s is already resolved", id)
	}
	e := audit.New(audit.TypeAlertState, audit.OutcomeInfo, reason.Code(state), time.Now(),
		audit.Subject{Agent: v.Alert.Agent, User: v.Alert.User, SessionID: v.Alert.SessionID})
	e.Alert = id
	e.Detail = "by " + by
	if c := strings.TrimSpace(comment); c != "" {
		e.Detail += ": " + c
	}
	return audit.WriteNow(ctx, o.st, e)
}

// Describe renders an alert for people.
func (v *AlertView) Describe() string {
	a := v.Alert
	var b strings.Builder
	fmt.Fprintf(&b, "alert     %s (%s)\nclass     %s, severity %s, techniques %s\ntime      %s\n", a.Alert, v.State, a.Code, a.Severity, strings.Join(a.Techniques, " "), a.Time.Local().Format(time.RFC3339))
	fmt.Fprintf(&b, "agent     %s\nuser      %s\ntask      %s\nsession   %s\nrequest   %s\ntarget    %s\nevidence  %s\n", a.Agent, a.User, a.Task, a.SessionID, a.RequestID, a.Target, a.Detail)
	if len(a.Actors) > 0 {
		fmt.Fprintf(&b, "via       %s\n", strings.Join(a.Actors, " <- "))
	}
	if v.Triage != nil {
		fmt.Fprintf(&b, "triage    %s\n", v.Triage.Detail)
	} else {
		b.WriteString("triage    not yet\n")
	}
	for _, r := range v.Responses {
		fmt.Fprintf(&b, "response  %s at %s\n", r.Code, r.Time.Local().Format(time.TimeOnly))
	}
	for _, s := range v.States {
		fmt.Fprintf(&b, "%-9s %s at %s\n", s.Code, s.Detail, s.Time.Local().Format(time.RFC3339))
	}
	return b.String()
}

// Incident is the alerts of one agent's session taken together.
type Incident struct {
	Agent, User, Session string
	First, Last          time.Time
	Alerts               []*AlertView
	Classes              []string
	Severity             string // the highest
	Verdict              string // the worst triage verdict
	Steps                []string
	Open                 int // alerts not resolved
}

// Incidents groups the latest alerts by agent and session, most recent
// first; open only keeps incidents with an unresolved alert.
func (o *Ops) Incidents(ctx context.Context, open bool) ([]*Incident, error) {
	views, err := o.Alerts(ctx, "all", 0)
	if err != nil {
		return nil, err
	}
	return GroupIncidents(views, open), nil
}

// GroupIncidents groups alert views (newest first) by agent and session;
// open only keeps incidents with an unresolved alert.
func GroupIncidents(views []*AlertView, open bool) []*Incident {
	rank := func(list []string, s string) int { return slices.Index(list, s) }
	severities := []string{"low", "medium", "high"}
	verdicts := []string{"benign", "suspicious", "malicious"}
	by := map[string]*Incident{}
	var out []*Incident
	for _, v := range views { // newest first
		a := v.Alert
		key := a.Agent + "\x00" + a.SessionID
		in := by[key]
		if in == nil {
			in = &Incident{Agent: a.Agent, User: a.User, Session: a.SessionID, Last: a.Time}
			by[key] = in
			out = append(out, in)
		}
		in.First = a.Time
		in.Alerts = append(in.Alerts, v)
		if !slices.Contains(in.Classes, string(a.Code)) {
			in.Classes = append(in.Classes, string(a.Code))
		}
		if rank(severities, a.Severity) > rank(severities, in.Severity) {
			in.Severity = a.Severity
		}
		if v.Triage != nil && rank(verdicts, string(v.Triage.Code)) > rank(verdicts, in.Verdict) {
			in.Verdict = string(v.Triage.Code)
		}
		for _, r := range v.Responses {
			if !slices.Contains(in.Steps, string(r.Code)) {
				in.Steps = append(in.Steps, string(r.Code))
			}
		}
		if v.State != AlertResolved {
			in.Open++
		}
	}
	if open {
		out = slices.DeleteFunc(out, func(in *Incident) bool { return in.Open == 0 })
	}
	return out
}

// ReleaseContainment lifts the response's hold on a session (or, with
// session "", on every session of agent): recorded for the running
// gateway, which applies it within a second, and audited in by's name.
// A revocation is lifted by Unrevoke.
func (o *Ops) ReleaseContainment(ctx context.Context, session, agent, by string) error {
	if err := attributed(by); err != nil {
		return err
	}
	if (session == "") == (agent == "") {
		return errors.New("release: give a session or an agent")
	}
	e := audit.New(audit.TypeResponse, audit.OutcomeInfo, reason.ResponseReleased, time.Now(), audit.Subject{Agent: agent, SessionID: session})
	e.Detail = "containment lifted by " + by
	if err := audit.WriteNow(ctx, o.st, e); err != nil {
		return err
	}
	return o.st.AddRelease(ctx, session, agent, by)
}
