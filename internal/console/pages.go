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
	s.mux.HandleFunc("GET "+Prefix+"/login", s.confirmSignIn)
	s.mux.HandleFunc("POST "+Prefix+"/login", s.signIn)
	s.mux.HandleFunc("POST "+Prefix+"/oidc/start", s.startIdP)
	s.mux.HandleFunc("GET "+Prefix+"/oidc/callback", s.idpCallback)
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
	p := page{Page: name, S: ss, Data: data}
	if ss != nil && r.URL.Query().Get("fragment") != "1" {
		p.Flash, p.Error = s.takeFlash(ss)
	}
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

// fail shows an error page for a failed read (the details go to the
// log, not to the page).
func (s *Server) fail(w http.ResponseWriter, r *http.Request, ss *session, err error) {
	s.o.Log.Error("console", "path", r.URL.Path, "err", err)
	s.render(w, r, http.StatusInternalServerError, "error", ss, map[string]any{"Title": "Something failed", "Message": "the page could not be read; the gateway's log says why"})
}

// back redirects to path after a change; the next page says what happened
// (kept in the session: a URL cannot put words on the console's pages).
func (s *Server) back(w http.ResponseWriter, r *http.Request, ss *session, path, done string, err error) {
	s.setFlash(ss, done, err)
	http.Redirect(w, r, path, http.StatusSeeOther)
}

// Overview.

type bar struct {
	X, Y, H, W     int
	Label, Tooltip string
	Kind           string
}

func (s *Server) overview(w http.ResponseWriter, r *http.Request, ss *session) {
	data, err := s.overviewData(r.Context())
	if err != nil {
		s.fail(w, r, ss, err)
		return
	}
	s.render(w, r, http.StatusOK, "overview", ss, data)
}

// maxOpenCount is where the overview stops counting open alerts ("100 or
// more": the alerts page lists them).
const maxOpenCount = 100

// eventTypes are every type of audit event (the overview counts them).
var eventTypes = append(slices.Clone(auditTypes), audit.TypeRetention, audit.TypeUpstreamAuth, audit.TypeBaseline)

// chartSample is how many of the day's latest decisions the chart splits
// by outcome (counting them all is the type index's job; splitting them
// needs their bodies).
const chartSample = 3000

// overviewTTL is how long the overview's figures are reused: they sum
// thousands of events, and every reviewer's browser may open the page.
const overviewTTL = 10 * time.Second

// overviewData computes the overview's figures (or reuses them for
// overviewTTL).
func (s *Server) overviewData(ctx context.Context) (map[string]any, error) {
	s.ovMu.Lock()
	defer s.ovMu.Unlock()
	now := s.o.Now()
	if s.ovData != nil && now.Sub(s.ovAt) < overviewTTL {
		return s.ovData, nil
	}
	pending, err := s.o.Store.PendingApprovals(ctx, now, store.MaxQueryLimit)
	if err != nil {
		return nil, err
	}
	alerts, err := s.o.Ops.Alerts(ctx, ops.AlertOpen, maxOpenCount)
	if err != nil {
		return nil, err
	}
	pins, err := s.o.Store.Pins(ctx, "")
	if err != nil {
		return nil, err
	}
	quarantined := 0
	for _, p := range pins {
		if p.State == toolreg.Quarantined {
			quarantined++
		}
	}
	// The last 24 hours: how many decisions, screening actions and alerts
	// (counted on the type index), and the split of the latest
	// chartSample decisions per hour (allowed, denied, held).
	from, err := s.o.Store.SeqSince(ctx, now.Add(-24*time.Hour))
	if err != nil {
		return nil, err
	}
	// Decisions are most of the log: counted as the window's events less
	// the other types' (each a short range of the type index).
	state, err := s.o.Store.State(ctx)
	if err != nil {
		return nil, err
	}
	counts := map[audit.Type]int64{audit.TypeDecision: state.Size - (from - 1)}
	for _, t := range eventTypes {
		if t == audit.TypeDecision {
			continue
		}
		n, err := s.o.Store.CountEvents(ctx, string(t), from-1)
		if err != nil {
			return nil, err
		}
		counts[t] = n
		counts[audit.TypeDecision] -= n
	}
	rows, err := s.o.Store.Events(ctx, store.EventQuery{AfterSeq: from - 1, Types: []string{string(audit.TypeDecision)}, Limit: chartSample, Last: true})
	if err != nil {
		return nil, err
	}
	type hour struct{ allow, deny, held int }
	hours := make([]hour, 24)
	totals := hour{}
	for _, row := range rows {
		age := now.Sub(row.Time)
		if age < 0 || age >= 24*time.Hour {
			continue
		}
		h := &hours[23-int(age/time.Hour)]
		// Only what the chart needs of a decision.
		var e struct {
			Outcome audit.Outcome `json:"outcome"`
			Code    reason.Code   `json:"code"`
		}
		if json.Unmarshal(row.Body, &e) != nil {
			continue
		}
		switch {
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
	// Screening actions and alerts per hour: each hour's first event found
	// by bisection, then counted on the type index between them.
	since := now.Add(-24 * time.Hour)
	var bounds [25]int64
	for i := range 24 {
		if bounds[i], err = s.o.Store.SeqSince(ctx, since.Add(time.Duration(i)*time.Hour)); err != nil {
			return nil, err
		}
	}
	bounds[24] = state.Size + 1
	var screened, raised [24]int
	for i := range 24 {
		for _, c := range []struct {
			typ audit.Type
			out *[24]int
		}{{audit.TypeScreening, &screened}, {audit.TypeAlert, &raised}} {
			n, err := s.o.Store.CountEventsBetween(ctx, string(c.typ), bounds[i]-1, bounds[i+1]-1)
			if err != nil {
				return nil, err
			}
			c.out[i] = int(n)
		}
	}
	peak2 := 1
	for i := range 24 {
		peak2 = max(peak2, screened[i], raised[i])
	}
	var bars2 []bar
	for i := range 24 {
		label := since.Add(time.Duration(i) * time.Hour).Local().Format("15:00")
		for j, part := range []struct {
			n    int
			kind string
		}{{screened[i], "screened"}, {raised[i], "alert"}} {
			if part.n == 0 {
				continue
			}
			ht := max(1, part.n*110/peak2)
			bars2 = append(bars2, bar{X: 30 + i*22 + j*9, Y: 120 - ht, H: ht, W: 8, Kind: part.kind, Tooltip: fmt.Sprintf("%s: %d %s", label, part.n, part.kind)})
		}
	}
	var ups []UpstreamState
	if s.o.Upstreams != nil {
		ups = s.o.Upstreams()
	}
	cp, hasCP, err := s.o.Store.LatestCheckpoint(ctx)
	if err != nil {
		return nil, err
	}
	s.ovData = map[string]any{
		"Pending": len(pending), "Alerts": len(alerts), "AlertsMore": len(alerts) == maxOpenCount, "Quarantined": quarantined, "Upstreams": ups,
		"Decisions": counts[audit.TypeDecision], "Allowed": totals.allow, "Denied": totals.deny, "Held": totals.held,
		"Screened": counts[audit.TypeScreening], "AlertsDay": counts[audit.TypeAlert], "Sampled": int64(len(rows)) < counts[audit.TypeDecision], "Sample": len(rows), "Bars": bars, "Peak": peak, "LogSize": state.Size, "Checkpoint": cp, "HasCheckpoint": hasCP,
		"Policy": s.o.Engine.Version(), "At": now, "Bars2": bars2, "Peak2": peak2,
	}
	s.ovAt = now
	return s.ovData, nil
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

// scanWindow is how many of the log's last events a page reads when no
// index narrows its query (a task's tokens, a search by type or text).
const scanWindow = 100_000

// maxQueue bounds the held calls the page shows (oldest first: a new
// request never slides under the reviewer's cursor).
const maxQueue = 100

func (s *Server) approvals(w http.ResponseWriter, r *http.Request, ss *session) {
	ctx := r.Context()
	pendingReqs, err := s.o.Store.PendingApprovals(ctx, s.o.Now(), maxQueue+1)
	if err != nil {
		s.fail(w, r, ss, err)
		return
	}
	more := len(pendingReqs) > maxQueue
	if more {
		pendingReqs = pendingReqs[:maxQueue]
	}
	decidedReqs, err := s.o.Store.DecidedApprovals(ctx, 20)
	if err != nil {
		s.fail(w, r, ss, err)
		return
	}
	var pending, decided []approvalView
	for _, a := range pendingReqs {
		v := s.view(a)
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
	}
	for _, a := range decidedReqs {
		decided = append(decided, approvalView{Request: a})
	}
	name := "approvals"
	if r.URL.Query().Get("fragment") == "1" {
		name = "approvals-list" // the live queue's refresh
	}
	s.render(w, r, http.StatusOK, name, ss, map[string]any{"Pending": pending, "More": more, "Decided": decided})
}

// view prepares a held call for the page: its arguments indented, with
// secrets masked (cached by the arguments' hash: the queue is refreshed
// every few seconds).
func (s *Server) view(a *approval.Request) approvalView {
	s.maskMu.Lock()
	m, ok := s.masked[a.ArgsSHA256]
	s.maskMu.Unlock()
	if !ok {
		var pretty bytes.Buffer
		if json.Indent(&pretty, a.Arguments, "", "  ") != nil {
			pretty.Reset()
			pretty.Write(a.Arguments)
		}
		m.text, m.n = maskSecrets(pretty.String())
		s.maskMu.Lock()
		if len(s.masked) > 4*maxQueue {
			clear(s.masked)
		}
		s.masked[a.ArgsSHA256] = m
		s.maskMu.Unlock()
	}
	return approvalView{Request: a, Args: m.text, Masked: m.n}
}

func (s *Server) decideApproval(w http.ResponseWriter, r *http.Request, ss *session) {
	id := r.PathValue("id")
	state := map[string]string{"approve": approval.Approved, "deny": approval.Denied}[r.PostFormValue("action")]
	if state == "" {
		s.back(w, r, ss, Prefix+"/approvals", "", errors.New("choose approve or deny"))
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
	s.back(w, r, ss, Prefix+"/approvals", fmt.Sprintf("%s %s", id, state), err)
}

// Alerts.

func (s *Server) alerts(w http.ResponseWriter, r *http.Request, ss *session) {
	vs, err := s.o.Ops.Alerts(r.Context(), "", 200)
	if err != nil {
		s.fail(w, r, ss, err)
		return
	}
	incidents := ops.GroupIncidents(vs, true)
	s.render(w, r, http.StatusOK, "alerts", ss, map[string]any{"Alerts": vs, "Incidents": incidents})
}

func (s *Server) alertState(w http.ResponseWriter, r *http.Request, ss *session) {
	state := map[string]string{"ack": ops.AlertAcknowledged, "resolve": ops.AlertResolved}[r.PostFormValue("action")]
	if state == "" {
		s.back(w, r, ss, Prefix+"/alerts", "", errors.New("choose acknowledge or resolve"))
		return
	}
	err := s.o.Ops.SetAlertState(r.Context(), r.PathValue("id"), state, ss.Admin, r.PostFormValue("comment"))
	s.back(w, r, ss, Prefix+"/alerts", r.PathValue("id")+" "+state, err)
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
		if !slices.Contains(auditTypes, audit.Type(t)) {
			s.render(w, r, http.StatusBadRequest, "error", ss, map[string]any{"Title": "Bad search", "Message": "no such event type"})
			return
		}
		eq.Types = []string{t}
	}
	user, task, outcome := q.Get("user"), q.Get("task"), q.Get("outcome")
	if task != "" {
		eq.BodyContains = task
	}
	// Without an indexed filter (agent, session, request, trace) a search
	// reads the log's last scanWindow events only, and says so.
	windowed := eq.Agent == "" && eq.SessionID == "" && eq.RequestID == "" && eq.TraceID == ""
	state, err := s.o.Store.State(r.Context())
	if err != nil {
		s.fail(w, r, ss, err)
		return
	}
	if windowed {
		eq.AfterSeq = max(0, state.Size-scanWindow)
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
	cp, hasCP, err := s.o.Store.LatestCheckpoint(r.Context())
	if err != nil {
		s.fail(w, r, ss, err)
		return
	}
	integrity := ""
	if s.o.Integrity != nil {
		integrity = s.o.Integrity()
	}
	s.render(w, r, http.StatusOK, "audit", ss, map[string]any{"Events": events, "Q": q, "Types": auditTypes, "LogSize": state.Size, "Checkpoint": cp, "HasCheckpoint": hasCP, "Integrity": integrity,
		"Windowed": windowed && state.Size > scanWindow, "Window": scanWindow})
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
	var approved *version
	for _, p := range versions {
		var b bytes.Buffer
		if json.Indent(&b, p.Definition, "", "  ") != nil {
			b.Write(p.Definition)
		}
		vs = append(vs, version{Pin: p, Pretty: b.String()})
		if p.State == toolreg.Approved {
			approved = &vs[len(vs)-1]
		}
	}
	// Side by side: the approved definition beside each quarantined one.
	type pair struct{ Approved, Pending version }
	var pairs []pair
	if approved != nil {
		for _, v := range vs {
			if v.State == toolreg.Quarantined {
				pairs = append(pairs, pair{*approved, v})
			}
		}
	}
	s.render(w, r, http.StatusOK, "tool", ss, map[string]any{"Upstream": up, "Name": name, "Versions": vs, "Diff": diff, "Pairs": pairs})
}

func (s *Server) decideTool(w http.ResponseWriter, r *http.Request, ss *session) {
	up, name := r.PathValue("upstream"), r.PathValue("name")
	state := map[string]string{"approve": toolreg.Approved, "reject": toolreg.Rejected}[r.PostFormValue("action")]
	if state == "" {
		s.back(w, r, ss, Prefix+"/tools", "", errors.New("choose approve or reject"))
		return
	}
	digest := r.PostFormValue("digest")
	if digest == "" {
		s.back(w, r, ss, Prefix+"/tools", "", errors.New("which definition? (the form names its digest)"))
		return
	}
	_, err := s.o.Ops.DecidePinDigest(r.Context(), up, name, digest, state, ss.Admin)
	s.back(w, r, ss, Prefix+"/tools", up+"/"+name+" "+state, err)
}

// Agents and tasks.

func (s *Server) agents(w http.ResponseWriter, r *http.Request, ss *session) {
	ctx := r.Context()
	ins, err := s.o.Ops.ListInstances(ctx)
	if err != nil {
		s.fail(w, r, ss, err)
		return
	}
	tasks, err := s.o.Ops.RecentTasks(ctx, scanWindow)
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
	// Delegation trees of the tasks started among the last scanWindow
	// events.
	state, err := s.o.Store.State(ctx)
	if err != nil {
		s.fail(w, r, ss, err)
		return
	}
	rows, err := s.o.Store.Events(ctx, store.EventQuery{AfterSeq: max(0, state.Size-scanWindow), Types: []string{string(audit.TypeToken)}, Limit: store.MaxQueryLimit, Last: true})
	if err != nil {
		s.fail(w, r, ss, err)
		return
	}
	var tokenEvents []*audit.Event
	for _, row := range rows {
		if e, err := audit.Decode(row); err == nil {
			tokenEvents = append(tokenEvents, e)
		}
	}
	trees := delegationTrees(tokenEvents)
	if len(trees) > 50 {
		trees = trees[:50]
	}
	s.render(w, r, http.StatusOK, "agents", ss, map[string]any{"Agents": agents, "Tasks": tasks, "Trees": trees})
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
	s.back(w, r, ss, Prefix+"/agents", kind+" "+value+" revoked", err)
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
