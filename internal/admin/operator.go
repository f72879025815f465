package admin

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/portcullis-dev/portcullis/internal/approval"
	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/ops"
	"github.com/portcullis-dev/portcullis/internal/reason"
	"github.com/portcullis-dev/portcullis/internal/store"
	"github.com/portcullis-dev/portcullis/internal/token"
)

// MaxAdminBody bounds an admin API request body.
const MaxAdminBody = 64 << 10

// adminAPI serves /v1/ on the admin listener. Every request needs an admin
// token of a configured admin; the admin's name is the reviewer recorded.
type adminAPI struct {
	s *Server
	v *token.Verifier
}

// OperatorHandler serves the operator API (/v1/ on the admin listener:
// approvals and tasks). Every request needs an admin token of a configured
// admin; refusals are audited.
func (s *Server) OperatorHandler() http.Handler {
	a := &adminAPI{s: s, v: token.NewTypedVerifier(s.key, token.TypAdmin, s.cfg.Auth.Issuer, ops.AdminAudience, s.cfg.Auth.MaxTTL.D(), nil)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/approvals", a.listApprovals)
	mux.HandleFunc("GET /v1/approvals/{id}", a.showApproval)
	mux.HandleFunc("POST /v1/approvals/{id}/approve", a.decide(approval.Approved))
	mux.HandleFunc("POST /v1/approvals/{id}/deny", a.decide(approval.Denied))
	mux.HandleFunc("POST /v1/tasks", a.startTask)
	mux.HandleFunc("POST /v1/intents", a.issueIntent)
	mux.HandleFunc("GET /v1/upstreams/authorizations", a.listAuthorizations)
	mux.HandleFunc("POST /v1/containment/release", a.releaseContainment)
	return a.authenticate(mux)
}

type adminKey struct{}

func (a *adminAPI) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scheme, raw, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		var name string
		if strings.EqualFold(scheme, "Bearer") {
			if c, err := a.v.Verify(strings.TrimSpace(raw)); err == nil && a.s.cfg.Admin(c.Agent) {
				name = c.Agent
			}
		}
		if name == "" {
			e := audit.New(audit.TypeAuthn, audit.OutcomeDeny, reason.Unauthenticated, time.Now(), audit.Subject{RemoteAddr: r.RemoteAddr})
			e.Method, e.Detail = r.Method+" "+r.URL.Path, "admin API"
			a.s.submit(e)
			w.Header().Set("WWW-Authenticate", `Bearer realm="portcullis-admin"`)
			writeError(w, http.StatusUnauthorized, "unauthenticated")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, MaxAdminBody)
		next.ServeHTTP(w, r.WithContext(contextWith(r, name)))
	})
}

// releaseContainment undoes the response's hold on a session or an agent
// (a revocation is undone by `portcullis revoke`'s own record, not here).
func (a *adminAPI) releaseContainment(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Session string `json:"session"`
		Agent   string `json:"agent"`
	}
	if err := decodeBody(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if (req.Session == "") == (req.Agent == "") || a.s.release == nil {
		writeError(w, http.StatusBadRequest, "give session or agent")
		return
	}
	a.s.release(req.Session, req.Agent, adminOf(r))
	writeJSONResponse(w, http.StatusOK, map[string]any{"released": true, "by": adminOf(r)})
}

// listAuthorizations lists the upstream authorizations waiting for an
// operator to open their URL.
func (a *adminAPI) listAuthorizations(w http.ResponseWriter, r *http.Request) {
	var out any = []any{}
	if a.s.authzs != nil {
		out = a.s.authzs()
	}
	writeJSONResponse(w, http.StatusOK, out)
}

func (a *adminAPI) listApprovals(w http.ResponseWriter, r *http.Request) {
	state := r.URL.Query().Get("state")
	if state == "" {
		state = approval.Pending
	}
	if state == "all" {
		state = ""
	}
	rs, err := a.s.ops.ListApprovals(r.Context(), state)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "store unavailable")
		return
	}
	out := make([]map[string]any, 0, len(rs))
	for _, x := range rs {
		out = append(out, approvalJSON(x))
	}
	writeJSONResponse(w, http.StatusOK, out)
}

func (a *adminAPI) showApproval(w http.ResponseWriter, r *http.Request) {
	x, err := a.s.ops.ShowApproval(r.Context(), r.PathValue("id"))
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, "no such approval")
		return
	}
	if err != nil {
		writeError(w, http.StatusInternalServerError, "store unavailable")
		return
	}
	writeJSONResponse(w, http.StatusOK, approvalJSON(x))
}

func (a *adminAPI) decide(state string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Scope   string `json:"scope"`
			Comment string `json:"comment"`
		}
		if r.ContentLength != 0 {
			if err := decodeBody(r, &body); err != nil {
				writeError(w, http.StatusBadRequest, err.Error()+` (want {"scope": "once"|"session"|"task", "comment": "..."})`)
				return
			}
		}
		if body.Scope == "" || state == approval.Denied {
			body.Scope = approval.ScopeOnce
		}
		x, err := a.s.ops.DecideApproval(r.Context(), r.PathValue("id"), state, adminOf(r), body.Scope, body.Comment)
		switch {
		case errors.Is(err, store.ErrNotFound):
			writeError(w, http.StatusNotFound, "no such approval")
		case errors.Is(err, approval.ErrSelfApproval):
			writeError(w, http.StatusForbidden, "you cannot decide your own request")
		case errors.Is(err, approval.ErrNotPending):
			writeError(w, http.StatusConflict, "not pending (already decided, or expired)")
		case err != nil:
			writeError(w, http.StatusBadRequest, err.Error())
		default:
			writeJSONResponse(w, http.StatusOK, approvalJSON(x))
		}
	}
}

// startTask is the API form of `portcullis task start`, for orchestrators.
func (a *adminAPI) startTask(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Agent      string   `json:"agent"`
		User       string   `json:"user"`
		IDToken    string   `json:"id_token"`
		Purpose    string   `json:"purpose"`
		Tools      []string `json:"tools"`
		Budget     int      `json:"budget"`
		Depth      int      `json:"depth"`
		TTLSeconds int      `json:"ttl_seconds"`
		JKT        string   `json:"jkt"`
		X5T        string   `json:"x5t"`
	}
	if err := decodeBody(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	t := token.Task{Agent: req.Agent, User: req.User, Purpose: req.Purpose, Tools: req.Tools, Budget: req.Budget, Depth: req.Depth, JKT: req.JKT, X5T: req.X5T}
	raw, issued, err := a.s.ops.StartTask(r.Context(), t, req.IDToken, a.ttl(req.TTLSeconds), adminOf(r))
	if issueFailed(w, err) {
		return
	}
	writeJSONResponse(w, http.StatusOK, map[string]any{"task_id": issued.ID, "token": raw, "expires": issued.Expires, "user": issued.User, "started_by": adminOf(r)})
}

// issueIntent signs what a user asked an agent for, for the orchestrator's
// Portcullis-Intent header (ops.IssueIntent).
func (a *adminAPI) issueIntent(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Agent      string `json:"agent"`
		User       string `json:"user"`
		IDToken    string `json:"id_token"`
		Intent     string `json:"intent"`
		TTLSeconds int    `json:"ttl_seconds"`
	}
	if err := decodeBody(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	raw, issued, err := a.s.ops.IssueIntent(r.Context(), token.Intent{Agent: req.Agent, User: req.User, Text: req.Intent}, req.IDToken, a.ttl(req.TTLSeconds), adminOf(r))
	if issueFailed(w, err) {
		return
	}
	writeJSONResponse(w, http.StatusOK, map[string]any{"token": raw, "expires": issued.Expires, "user": issued.User, "issued_by": adminOf(r)})
}

// ttl is a requested lifetime in seconds, or auth.default_ttl.
func (a *adminAPI) ttl(seconds int) time.Duration {
	if seconds > 0 {
		return time.Duration(seconds) * time.Second
	}
	return a.s.cfg.Auth.DefaultTTL.D()
}

// issueFailed answers a refused task start or intent: 503 when the
// identity provider could not be asked, else 400 with why.
func issueFailed(w http.ResponseWriter, err error) bool {
	switch {
	case errors.Is(err, ops.ErrIdentityProvider):
		writeError(w, http.StatusServiceUnavailable, "identity provider unavailable")
	case err != nil:
		writeError(w, http.StatusBadRequest, err.Error())
	default:
		return false
	}
	return true
}

func approvalJSON(x *approval.Request) map[string]any {
	return map[string]any{
		"id": x.ID, "state": x.State, "agent": x.Agent, "user": x.User, "task": x.Task, "tool": x.Tool,
		"arguments": json.RawMessage(orNull(x.Arguments)), "arguments_sha256": x.ArgsSHA256, "reasons": x.Reasons,
		"findings": x.Findings, "created": x.Created, "expires": x.Expires, "scope": x.Scope,
		"decided_by": x.DecidedBy, "text": x.Describe(),
	}
}

func orNull(b []byte) []byte {
	if len(b) == 0 || !json.Valid(b) {
		return []byte("null")
	}
	return b
}

func writeJSONResponse(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSONResponse(w, status, map[string]string{"error": msg})
}

func contextWith(r *http.Request, admin string) context.Context {
	return context.WithValue(r.Context(), adminKey{}, admin)
}

func adminOf(r *http.Request) string {
	s, _ := r.Context().Value(adminKey{}).(string)
	return s
}
