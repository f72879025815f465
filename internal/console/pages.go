package console

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/portcullis-dev/portcullis/internal/approval"
	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/identity"
	"github.com/portcullis-dev/portcullis/internal/ops"
	"github.com/portcullis-dev/portcullis/internal/policy"
	"github.com/portcullis-dev/portcullis/internal/posture"
	"github.com/portcullis-dev/portcullis/internal/reason"
	"github.com/portcullis-dev/portcullis/internal/screen"
	"github.com/portcullis-dev/portcullis/internal/store"
	"github.com/portcullis-dev/portcullis/internal/toolreg"
)

func (s *Server) routes() {
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("GET "+Prefix+"/login", s.signIn)
	s.mux.Handle("GET "+Prefix+"/static/", s.static())
	s.route("POST "+Prefix+"/logout", "viewer", s.signOut)
	s.route("GET "+Prefix+"/{$}", "viewer", s.overview)
	s.route("GET "+Prefix+"/approvals", "viewer", s.approvals)
	s.route("POST "+Prefix+"/approvals/{id}", "approver", s.decideApproval)
	s.route("GET "+Prefix+"/alerts", "viewer", s.alerts)
	s.route("POST "+Prefix+"/alerts/{id}", "operator", s.alertState)
	s.route("GET "+Prefix+"/audit", "viewer", s.audit)
	s.route("GET "+Prefix+"/audit/request/{id}", "viewer", s.requestChain)
	s.route("GET "+Prefix+"/tools", "viewer", s.tools)
	s.route("GET "+Prefix+"/tools/{upstream}/{name}", "viewer", s.tool)
	s.route("POST "+Prefix+"/tools/{upstream}/{name}", "operator", s.decideTool)
	s.route("GET "+Prefix+"/agents", "viewer", s.agents)
	s.route("POST "+Prefix+"/revoke", "operator", s.revoke)
	s.route("GET "+Prefix+"/policy", "viewer", s.policy)
}

var funcs = template.FuncMap{
	"time":     func(t time.Time) string { return t.Local().Format("2006-01-02 15:04:05") },
	"join":     strings.Join,
	"since":    func(t time.Time) string { return time.Since(t).Round(time.Second).String() },
	"until":    func(t time.Time) string { return time.Until(t).Round(time.Second).String() },
	"path":     url.PathEscape,
	"can":      func(have, need string) bool { return roleRank(have) >= roleRank(need) },
	"outcomes": func() []string { return []string{"allow", "deny", "error", "info"} },
}

// page is what every template gets.
type page struct {
	Page  string
	S     *session
	Flash string
	Error string
	Data  map[string]any
}

func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, name string, ss *session, data map[string]any) {
	p := page{Page: name, S: ss, Data: data, Flash: r.URL.Query().Get("done"), Error: r.URL.Query().Get("error")}
	if data != nil {
		if e, ok := data["Error"].(string); ok {
			p.Error = e
		}
	}
	var b bytes.Buffer
	if err := s.pages.ExecuteTemplate(&b, name, p); err != nil {
		s.o.Log.Error("console: render", "page", name, "err", err)
		http.Error(w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(b.Bytes())
}

// fail shows an error page for a failed read.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, ss *session, err error) {
	s.o.Log.Error("console", "path", r.URL.Path, "err", err)
	s.render(w, r, http.StatusInternalServerError, "error", ss, map[string]any{"Title": "Something failed", "Message": err.Error()})
}

// back redirects to path after a change, with what happened.
func back(w http.ResponseWriter, r *http.Request, path, done string, err error) {
	q := url.Values{}
	if err != nil {
		q.Set("error", err.Error())
	} else {
		q.Set("done", done)
	}
	http.Redirect(w, r, path+"?"+q.Encode(), http.StatusSeeOther)
}

// Overview.

type bar struct {
	X, Y, H, W     int
	Label, Tooltip string
	Kind           string
}

func (s *Server) overview(w http.ResponseWriter, r *http.Request, ss *session) {
	ctx := r.Context()
	pending, err := s.o.Ops.ListApprovals(ctx, approval.Pending)
	if err != nil {
		s.fail(w, r, ss, err)
		return
	}
	alerts, err := s.o.Ops.Alerts(ctx, ops.AlertOpen, 500)
	if err != nil {
		s.fail(w, r, ss, err)
		return
	}
	pins, err := s.o.Store.Pins(ctx, "")
	if err != nil {
		s.fail(w, r, ss, err)
		return
	}
	quarantined := 0
	for _, p := range pins {
		if p.State == toolreg.Quarantined {
			quarantined++
		}
	}
	// Decisions of the last 24 hours, per hour: allowed, denied, held.
	now := s.o.Now()
	rows, err := s.o.Store.Events(ctx, store.EventQuery{Types: []string{string(audit.TypeDecision), string(audit.TypeScreening), string(audit.TypeAlert)}, Limit: store.MaxQueryLimit, Last: true})
	if err != nil {
		s.fail(w, r, ss, err)
		return
	}
	type hour struct{ allow, deny, held, screened, alerts int }
	hours := make([]hour, 24)
	totals := hour{}
	for _, row := range rows {
		age := now.Sub(row.Time)
		if age < 0 || age >= 24*time.Hour {
			continue
		}
		i := 23 - int(age/time.Hour)
		e, err := audit.Decode(row)
		if err != nil {
			continue
		}
		h := &hours[i]
		switch {
		case e.Type == audit.TypeScreening:
			h.screened++
			totals.screened++
		case e.Type == audit.TypeAlert:
			h.alerts++
			totals.alerts++
		case e.Outcome == audit.OutcomeAllow:
			h.allow++
			totals.allow++
		case e.Code == reason.ApprovalRequired:
			h.held++
			totals.held++
		default:
			h.deny++
			totals.deny++
		}
	}
	peak := 1
	for _, h := range hours {
		peak = max(peak, h.allow+h.deny+h.held)
	}
	var bars []bar
	for i, h := range hours {
		y := 120
		for _, part := range []struct {
			n    int
			kind string
		}{{h.allow, "allow"}, {h.deny, "deny"}, {h.held, "held"}} {
			if part.n == 0 {
				continue
			}
			ht := max(1, part.n*110/peak)
			y -= ht
			label := now.Add(-time.Duration(23-i) * time.Hour).Local().Format("15:00")
			bars = append(bars, bar{X: 30 + i*22, Y: y, H: ht, W: 18, Kind: part.kind, Tooltip: fmt.Sprintf("%s: %d %s", label, part.n, part.kind)})
		}
	}
	var ups []UpstreamState
	if s.o.Upstreams != nil {
		ups = s.o.Upstreams()
	}
	state, err := s.o.Store.State(ctx)
	if err != nil {
		s.fail(w, r, ss, err)
		return
	}
	cp, hasCP, err := s.o.Store.LatestCheckpoint(ctx)
	if err != nil {
		s.fail(w, r, ss, err)
		return
	}
	s.render(w, r, http.StatusOK, "overview", ss, map[string]any{
		"Pending": len(pending), "Alerts": len(alerts), "Quarantined": quarantined, "Upstreams": ups,
		"Allowed": totals.allow, "Denied": totals.deny, "Held": totals.held, "Screened": totals.screened, "AlertsDay": totals.alerts,
		"Bars": bars, "Peak": peak, "LogSize": state.Size, "Checkpoint": cp, "HasCheckpoint": hasCP, "Policy": s.o.Engine.Version(),
	})
}

// Approvals.

// approvalView is a request as the reviewer sees it.
type approvalView struct {
	*approval.Request
	Args    string // indented, secrets masked
	Masked  int
	History []*audit.Event
}

var (
	secretRulesOnce sync.Once
	secretRules     *screen.SecretRules
)

// maskSecrets replaces the secrets gitleaks' rules find in s.
func maskSecrets(s string) (string, int) {
	secretRulesOnce.Do(func() { secretRules, _ = screen.DefaultSecretRules() })
	if secretRules == nil {
		return "(arguments withheld: the secret rules did not load)", 0
	}
	fs := secretRules.Detect(s)
	if len(fs) == 0 {
		return s, 0
	}
	return screen.RedactSpans(s, fs), len(fs)
}

func (s *Server) approvals(w http.ResponseWriter, r *http.Request, ss *session) {
	ctx := r.Context()
	all, err := s.o.Ops.ListApprovals(ctx, "")
	if err != nil {
		s.fail(w, r, ss, err)
		return
	}
	var pending, decided []approvalView
	for i := len(all) - 1; i >= 0; i-- {
		a := all[i]
		var pretty bytes.Buffer
		if json.Indent(&pretty, a.Arguments, "", "  ") != nil {
			pretty.Reset()
			pretty.Write(a.Arguments)
		}
		v := approvalView{Request: a}
		v.Args, v.Masked = maskSecrets(pretty.String())
		if a.State == approval.Pending {
			if a.SessionID != "" {
				rows, err := s.o.Store.Events(ctx, store.EventQuery{SessionID: a.SessionID, Types: []string{string(audit.TypeDecision), string(audit.TypeSessionLabel), string(audit.TypeScreening)}, Limit: 10, Last: true})
				if err == nil {
					for _, row := range rows {
						if e, err := audit.Decode(row); err == nil {
							v.History = append(v.History, e)
						}
					}
				}
			}
			pending = append(pending, v)
		} else if len(decided) < 20 {
			decided = append(decided, v)
		}
	}
	name := "approvals"
	if r.URL.Query().Get("fragment") == "1" {
		name = "approvals-list" // the live queue's refresh
	}
	s.render(w, r, http.StatusOK, name, ss, map[string]any{"Pending": pending, "Decided": decided})
}

func (s *Server) decideApproval(w http.ResponseWriter, r *http.Request, ss *session) {
	id := r.PathValue("id")
	state := map[string]string{"approve": approval.Approved, "deny": approval.Denied}[r.PostFormValue("action")]
	if state == "" {
		back(w, r, Prefix+"/approvals", "", errors.New("choose approve or deny"))
		return
	}
	scope := r.PostFormValue("scope")
	if scope == "" || state == approval.Denied {
		scope = approval.ScopeOnce
	}
	_, err := s.o.Ops.DecideApproval(r.Context(), id, state, ss.Admin, scope, r.PostFormValue("comment"))
	switch {
	case errors.Is(err, approval.ErrSelfApproval):
		err = errors.New("you cannot decide a request of your own agent (separation of duties)")
	case errors.Is(err, approval.ErrNotPending):
		err = errors.New("no longer pending (decided by someone else, or expired)")
	case errors.Is(err, store.ErrNotFound):
		err = errors.New("no such request")
	}
	back(w, r, Prefix+"/approvals", fmt.Sprintf("%s %s", id, state), err)
}

// Alerts.

func (s *Server) alerts(w http.ResponseWriter, r *http.Request, ss *session) {
	vs, err := s.o.Ops.Alerts(r.Context(), "", 200)
	if err != nil {
		s.fail(w, r, ss, err)
		return
	}
	incidents, err := s.o.Ops.Incidents(r.Context(), true)
	if err != nil {
		s.fail(w, r, ss, err)
		return
	}
	s.render(w, r, http.StatusOK, "alerts", ss, map[string]any{"Alerts": vs, "Incidents": incidents})
}

func (s *Server) alertState(w http.ResponseWriter, r *http.Request, ss *session) {
	state := map[string]string{"ack": ops.AlertAcknowledged, "resolve": ops.AlertResolved}[r.PostFormValue("action")]
	if state == "" {
		back(w, r, Prefix+"/alerts", "", errors.New("choose acknowledge or resolve"))
		return
	}
	err := s.o.Ops.SetAlertState(r.Context(), r.PathValue("id"), state, ss.Admin, r.PostFormValue("comment"))
	back(w, r, Prefix+"/alerts", r.PathValue("id")+" "+state, err)
}

// Audit.

// auditTypes are the types the search offers.
var auditTypes = []audit.Type{audit.TypeDecision, audit.TypeApproval, audit.TypeScreening, audit.TypeAlert, audit.TypeTriage, audit.TypeResponse,
	audit.TypeAlertState, audit.TypeToken, audit.TypeIdentity, audit.TypeSupplyChain, audit.TypePolicy, audit.TypePrivilege, audit.TypeSessionLabel,
	audit.TypeUpstream, audit.TypeProtocol, audit.TypeAuthn, audit.TypeMemory, audit.TypeEgress, audit.TypeLifecycle, audit.TypeServer}

func (s *Server) audit(w http.ResponseWriter, r *http.Request, ss *session) {
	q := r.URL.Query()
	eq := store.EventQuery{Agent: q.Get("agent"), SessionID: q.Get("session"), RequestID: q.Get("request"), TraceID: q.Get("trace"), Limit: 500, Last: true}
	if t := q.Get("type"); t != "" {
		eq.Types = []string{t}
	}
	user, task, outcome := q.Get("user"), q.Get("task"), q.Get("outcome")
	if task != "" {
		eq.BodyContains = task
	}
	var since time.Time
	if d, err := time.ParseDuration(q.Get("within")); err == nil && d > 0 {
		since = s.o.Now().Add(-d)
	}
	rows, err := s.o.Store.Events(r.Context(), eq)
	if err != nil {
		s.fail(w, r, ss, err)
		return
	}
	var events []*audit.Event
	for i := len(rows) - 1; i >= 0 && len(events) < 200; i-- {
		e, err := audit.Decode(rows[i])
		if err != nil || user != "" && e.User != user || task != "" && e.Task != task || outcome != "" && string(e.Outcome) != outcome || !since.IsZero() && e.Time.Before(since) {
			continue
		}
		events = append(events, e)
	}
	state, err := s.o.Store.State(r.Context())
	if err != nil {
		s.fail(w, r, ss, err)
		return
	}
	cp, hasCP, err := s.o.Store.LatestCheckpoint(r.Context())
	if err != nil {
		s.fail(w, r, ss, err)
		return
	}
	s.render(w, r, http.StatusOK, "audit", ss, map[string]any{"Events": events, "Q": q, "Types": auditTypes, "LogSize": state.Size, "Checkpoint": cp, "HasCheckpoint": hasCP})
}

func (s *Server) requestChain(w http.ResponseWriter, r *http.Request, ss *session) {
	id := r.PathValue("id")
	rows, err := s.o.Store.Events(r.Context(), store.EventQuery{RequestID: id, Limit: 1000})
	if err != nil {
		s.fail(w, r, ss, err)
		return
	}
	var events []*audit.Event
	for _, row := range rows {
		if e, err := audit.Decode(row); err == nil {
			events = append(events, e)
		}
	}
	s.render(w, r, http.StatusOK, "chain", ss, map[string]any{"ID": id, "Events": events})
}

// Tools.

func (s *Server) tools(w http.ResponseWriter, r *http.Request, ss *session) {
	pins, err := s.o.Store.Pins(r.Context(), "")
	if err != nil {
		s.fail(w, r, ss, err)
		return
	}
	sort.SliceStable(pins, func(i, j int) bool {
		qi, qj := pins[i].State == toolreg.Quarantined, pins[j].State == toolreg.Quarantined
		if qi != qj {
			return qi
		}
		return pins[i].Upstream+"/"+pins[i].Name < pins[j].Upstream+"/"+pins[j].Name
	})
	s.render(w, r, http.StatusOK, "tools", ss, map[string]any{"Pins": pins})
}

func (s *Server) tool(w http.ResponseWriter, r *http.Request, ss *session) {
	up, name := r.PathValue("upstream"), r.PathValue("name")
	pins, err := s.o.Store.Pins(r.Context(), up)
	if err != nil {
		s.fail(w, r, ss, err)
		return
	}
	var versions []toolreg.Pin
	for _, p := range pins {
		if p.Name == name {
			versions = append(versions, p)
		}
	}
	if len(versions) == 0 {
		s.render(w, r, http.StatusNotFound, "error", ss, map[string]any{"Title": "No such tool", "Message": up + "/" + name})
		return
	}
	diff, err := s.o.Ops.PinDiff(r.Context(), up, name)
	if err != nil {
		diff = err.Error()
	}
	type version struct {
		toolreg.Pin
		Pretty string
	}
	var vs []version
	for _, p := range versions {
		var b bytes.Buffer
		if json.Indent(&b, p.Definition, "", "  ") != nil {
			b.Write(p.Definition)
		}
		vs = append(vs, version{Pin: p, Pretty: b.String()})
	}
	s.render(w, r, http.StatusOK, "tool", ss, map[string]any{"Upstream": up, "Name": name, "Versions": vs, "Diff": diff})
}

func (s *Server) decideTool(w http.ResponseWriter, r *http.Request, ss *session) {
	up, name := r.PathValue("upstream"), r.PathValue("name")
	state := map[string]string{"approve": toolreg.Approved, "reject": toolreg.Rejected}[r.PostFormValue("action")]
	if state == "" {
		back(w, r, Prefix+"/tools", "", errors.New("choose approve or reject"))
		return
	}
	_, err := s.o.Ops.DecidePin(r.Context(), up, name, state, ss.Admin)
	back(w, r, Prefix+"/tools", up+"/"+name+" "+state, err)
}

// Agents and tasks.

func (s *Server) agents(w http.ResponseWriter, r *http.Request, ss *session) {
	ctx := r.Context()
	ins, err := s.o.Ops.ListInstances(ctx)
	if err != nil {
		s.fail(w, r, ss, err)
		return
	}
	tasks, err := s.o.Ops.ListTasks(ctx)
	if err != nil {
		s.fail(w, r, ss, err)
		return
	}
	revs, err := s.o.Store.Revocations(ctx)
	if err != nil {
		s.fail(w, r, ss, err)
		return
	}
	type agentView struct {
		Name      string
		Roles     []string
		Instances []store.Instance
		Revoked   bool
	}
	var agents []agentView
	for _, a := range s.o.Config.Agents {
		v := agentView{Name: a.Name, Roles: a.Roles, Revoked: revs[store.RevokeAgent][a.Name]}
		for _, in := range ins {
			if in.Agent == a.Name {
				v.Instances = append(v.Instances, in)
			}
		}
		agents = append(agents, v)
	}
	slices.Reverse(tasks)
	if len(tasks) > 100 {
		tasks = tasks[:100]
	}
	s.render(w, r, http.StatusOK, "agents", ss, map[string]any{"Agents": agents, "Tasks": tasks})
}

func (s *Server) revoke(w http.ResponseWriter, r *http.Request, ss *session) {
	kind, value, why := r.PostFormValue("kind"), strings.TrimSpace(r.PostFormValue("value")), strings.TrimSpace(r.PostFormValue("reason"))
	if why == "" {
		why = "revoked from the console"
	}
	var err error
	if value == "" {
		err = errors.New("nothing named to revoke")
	} else {
		err = s.o.Ops.Revoke(r.Context(), kind, value, ss.Admin, why)
	}
	back(w, r, Prefix+"/agents", kind+" "+value+" revoked", err)
}

// Policy.

func (s *Server) policy(w http.ResponseWriter, r *http.Request, ss *session) {
	ctx := r.Context()
	kept, err := s.o.Store.Bundles(ctx)
	if err != nil {
		s.fail(w, r, ss, err)
		return
	}
	slices.Reverse(kept)
	rb, rolled, _ := s.o.Store.PolicyPointer(ctx, store.PolicyRollback)
	data := map[string]any{"Version": s.o.Engine.Version(), "Kept": kept, "Rollback": rb, "Rolled": rolled, "Agents": s.o.Config.Agents}
	q := r.URL.Query()
	if agent, tool := q.Get("agent"), q.Get("tool"); agent != "" && tool != "" {
		data["Explain"], data["ExplainErr"] = s.explain(ctx, agent, tool, q.Get("args"))
		data["Q"] = q
	}
	if seqText := q.Get("seq"); seqText != "" {
		seq, err := strconv.ParseInt(seqText, 10, 64)
		if err == nil {
			var rep *ops.Replay
			if rep, err = s.o.Ops.ReplayDecision(ctx, seq); err == nil {
				data["Replay"] = rep
			}
		}
		if err != nil {
			data["ReplayErr"] = err.Error()
		}
	}
	s.render(w, r, http.StatusOK, "policy", ss, data)
}

// explain decides a call of tool by agent with args under the bundle in
// force, as `portcullis policy explain` does.
func (s *Server) explain(ctx context.Context, agent, tool, args string) (string, string) {
	a, ok := s.o.Config.Agent(agent)
	if !ok {
		return "", "no agent " + agent
	}
	if strings.TrimSpace(args) == "" {
		args = "{}"
	}
	rec, err := policy.Arguments(json.RawMessage(args))
	if err != nil {
		return "", "arguments: " + err.Error()
	}
	// The tool as the gateway knows it: its pinned definition's hints and
	// the configuration's classification.
	t := policy.Target{Kind: policy.KindTool, ID: tool}
	pins, err := s.o.Store.Pins(ctx, "")
	if err != nil {
		return "", err.Error()
	}
	known := false
	for _, kt := range posture.KnownTools(s.o.Config, pins) {
		if kt.Name == tool {
			t.Upstream, t.ReadOnly, t.Destructive, t.OpenWorld, t.Classes = kt.Upstream, kt.ReadOnly, kt.Destructive, kt.OpenWorld, kt.Classes
			known = true
		}
	}
	if !known {
		return "", "no tool " + tool + " is known (pinned, or classified in the configuration)"
	}
	d, text := s.o.Engine.Explain(&policy.Input{Principal: &identity.Principal{Agent: a.Name, Roles: a.Roles}, Action: "call_tool", Method: "tools/call",
		Target: t, Arguments: rec, Now: s.o.Now(), BudgetLeft: -1})
	verdict := "deny (" + string(d.Code) + ")"
	if d.Allow {
		verdict = "allow"
	}
	return verdict + "\n" + text, ""
}
