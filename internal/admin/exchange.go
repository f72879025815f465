package admin

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/identity"
	"github.com/portcullis-dev/portcullis/internal/policy"
	"github.com/portcullis-dev/portcullis/internal/reason"
	"github.com/portcullis-dev/portcullis/internal/telemetry"
	"github.com/portcullis-dev/portcullis/internal/token"
)

// Delegation by OAuth 2.0 token exchange (RFC 8693) at POST /oauth/token.
//
// The agent holding a task token (proven with a DPoP proof for this very
// request, so a stolen token cannot delegate) asks for a token for another
// agent: a subset of its tools (scope), part of its remaining budget, an
// expiry no later than its own, bound to the receiving agent's key
// (dpop_jkt). Policy must permit the delegation (action "delegate"), the
// parent must have hops left, and the new token keeps the task and the user
// and records the chain of actors back to the start of the task (act).
//
// The same endpoint exchanges an access token of a configured external
// issuer (auth.external) for a task token of the agent it maps to: the
// tools it names (scope), a call budget, bound to a key (dpop_jkt), no
// longer-lived than the external token, recorded as its parent so that
// revoking the external credential revokes the task too. The task has no
// purpose: the caller holds only the agent's credential, and a purpose is
// trusted provenance (the user's word), which needs a signed intent or a
// task started for the user. A task only narrows what the agent may do,
// so no policy decision is needed beyond the external token's
// verification; upstreams never see the external token.

const (
	grantTokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"
	tokenTypeAccess    = "urn:ietf:params:oauth:token-type:access_token"
	maxExchangeBody    = 16 << 10
)

type oauthError struct {
	status int
	code   string
	desc   string
}

func (e *oauthError) Error() string { return e.code + ": " + e.desc }

func oerr(status int, code, format string, a ...any) *oauthError {
	return &oauthError{status: status, code: code, desc: fmt.Sprintf(format, a...)}
}

func (s *Server) serveTokenExchange(w http.ResponseWriter, r *http.Request) {
	who := audit.Subject{RemoteAddr: r.RemoteAddr}
	if id, ok := telemetry.ParseTraceparent(r.Header.Get("traceparent")); ok {
		who.TraceID = id
	}
	e := audit.New(audit.TypeToken, audit.OutcomeDeny, reason.TokenExchange, time.Now(), who)
	e.Method = "oauth/token"
	resp, err := s.exchange(r, e)
	if err != nil {
		var oe *oauthError
		if !errors.As(err, &oe) {
			oe = oerr(http.StatusInternalServerError, "server_error", "could not issue the token")
		}
		e.Outcome = audit.OutcomeDeny
		if e.Detail == "" {
			e.Detail = oe.Error()
		}
		s.submit(e)
		w.Header().Set("Cache-Control", "no-store")
		writeJSONResponse(w, oe.status, map[string]string{"error": oe.code, "error_description": oe.desc})
		return
	}
	// The token is released only once its issuance is durable.
	e.Outcome = audit.OutcomeAllow
	if err := s.rec.Record(r.Context(), e); err != nil {
		writeJSONResponse(w, http.StatusServiceUnavailable, map[string]string{"error": "temporarily_unavailable"})
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSONResponse(w, http.StatusOK, resp)
}

func (s *Server) exchange(r *http.Request, e *audit.Event) (map[string]any, error) {
	r.Body = http.MaxBytesReader(nil, r.Body, maxExchangeBody)
	if err := r.ParseForm(); err != nil {
		return nil, oerr(http.StatusBadRequest, "invalid_request", "unreadable form")
	}
	f := r.PostForm
	if f.Get("grant_type") != grantTokenExchange || f.Get("subject_token_type") != tokenTypeAccess {
		return nil, oerr(http.StatusBadRequest, "unsupported_grant_type", "want token-exchange of an access_token")
	}
	raw := f.Get("subject_token")
	if s.authn.IsExternal(raw) {
		return s.exchangeExternal(r, e, raw)
	}
	parent, err := s.authn.VerifyTask(raw)
	if err != nil {
		return nil, oerr(http.StatusBadRequest, "invalid_grant", "subject token: %v", err)
	}
	e.Agent, e.User, e.Task, e.Credential, e.Actors = parent.Agent, parent.User, parent.ID, parent.TokenID, parent.Actors
	if err := s.authn.ProveHolder(r, parent, raw); err != nil {
		return nil, oerr(http.StatusUnauthorized, "invalid_dpop_proof", "the subject token's holder must prove possession of its key for this request")
	}
	if s.revs.Revoked(parent.Agent, parent.TokenID, parent.ID) {
		return nil, oerr(http.StatusBadRequest, "invalid_grant", "subject token revoked")
	}
	to := f.Get("audience")
	e.Target = to
	receiver, ok := s.cfg.Agent(to)
	if !ok {
		return nil, oerr(http.StatusBadRequest, "invalid_target", "unknown agent %q", to)
	}
	delegator, _ := s.cfg.Agent(parent.Agent)
	budget, err := strconv.Atoi(f.Get("budget"))
	if err != nil {
		return nil, oerr(http.StatusBadRequest, "invalid_request", "budget: want a positive integer")
	}
	expires := parent.Expires
	if v := f.Get("expires_in"); v != "" {
		secs, err := strconv.Atoi(v)
		if err != nil || secs <= 0 {
			return nil, oerr(http.StatusBadRequest, "invalid_request", "expires_in: want seconds")
		}
		if t := time.Now().Add(time.Duration(secs) * time.Second); t.Before(expires) {
			expires = t
		}
	}
	left, err := s.budgets.Left(r.Context(), parent.TokenID, parent.Budget)
	if err != nil {
		return nil, err
	}
	child, err := token.Narrow(parent, receiver.Name, f.Get("dpop_jkt"), strings.Fields(f.Get("scope")), budget,
		left, expires)
	if err != nil {
		return nil, oerr(http.StatusBadRequest, "invalid_scope", "%v", err)
	}
	d := s.decider.Decide(&policy.Input{
		Principal: &identity.Principal{Agent: delegator.Name, Roles: delegator.Roles, User: parent.User, Task: parent.ID, TaskTools: parent.Tools, TaskBudget: parent.Budget},
		Action:    policy.ActionDelegate, Target: policy.Target{Kind: policy.KindAgent, ID: receiver.Name},
		Method: "oauth/token", BudgetLeft: int64(left),
	})
	e.Policies, e.PolicyVersion = d.Policies, d.Version
	if !d.Allow {
		return nil, oerr(http.StatusForbidden, "access_denied", "delegation not permitted (%s)", d.Code)
	}
	if _, ok, err := s.budgets.Reserve(r.Context(), parent.TokenID, parent.Budget, budget); err != nil {
		return nil, err
	} else if !ok {
		return nil, oerr(http.StatusBadRequest, "invalid_scope", "the parent no longer has %d calls left", budget)
	}
	iss, err := token.NewTypedIssuer(s.key, token.TypTask, s.cfg.Auth.Issuer, s.cfg.Auth.Audience, s.cfg.Auth.MaxTTL.D(), nil)
	if err != nil {
		return nil, err
	}
	ttl := time.Until(child.Expires).Round(time.Second)
	if ttl <= 0 {
		return nil, oerr(http.StatusBadRequest, "invalid_grant", "the subject token is about to expire")
	}
	tok, issued, err := iss.IssueTask(child, ttl)
	if err != nil {
		return nil, oerr(http.StatusBadRequest, "invalid_request", "%v", err)
	}
	e.Detail = fmt.Sprintf("delegated %s to %s: tools %v, budget %d, depth %d, token %s, until %s",
		parent.TokenID, issued.Agent, issued.Tools, issued.Budget, issued.Depth, issued.TokenID, issued.Expires.UTC().Format(time.RFC3339))
	return map[string]any{
		"access_token": tok, "issued_token_type": tokenTypeAccess, "token_type": "DPoP",
		"expires_in": int(time.Until(issued.Expires).Seconds()), "scope": strings.Join(issued.Tools, " "),
	}, nil
}

// exchangeExternal mints a task token for the agent an external access
// token maps to.
func (s *Server) exchangeExternal(r *http.Request, e *audit.Event, raw string) (map[string]any, error) {
	f := r.PostForm
	p, err := s.authn.External(r.Context(), raw)
	if err != nil {
		// The detail (issuer errors, agent names) is for the audit log only.
		e.Detail = "subject token: " + err.Error()
		return nil, oerr(http.StatusBadRequest, "invalid_grant", "the subject token is not accepted")
	}
	e.Agent, e.User, e.Credential = p.Agent, p.User, p.CredentialID
	budget, err := strconv.Atoi(f.Get("budget"))
	if err != nil || budget <= 0 {
		return nil, oerr(http.StatusBadRequest, "invalid_request", "budget: want a positive integer")
	}
	// The task token is bound to the key the request proves it holds (a
	// DPoP proof without ath, RFC 9449 §5); dpop_jkt, if given, must name
	// that key.
	jkt, err := s.authn.ProveKey(r)
	if err != nil {
		e.Detail = "dpop proof: " + err.Error()
		return nil, oerr(http.StatusUnauthorized, "invalid_dpop_proof", "task tokens are bound to the agent's key: send a DPoP proof of it")
	}
	if want := f.Get("dpop_jkt"); want != "" && want != jkt {
		return nil, oerr(http.StatusBadRequest, "invalid_request", "dpop_jkt names another key than the DPoP proof's")
	}
	ttl := s.cfg.Auth.DefaultTTL.D()
	if v := f.Get("expires_in"); v != "" {
		secs, err := strconv.Atoi(v)
		if err != nil || secs <= 0 {
			return nil, oerr(http.StatusBadRequest, "invalid_request", "expires_in: want seconds")
		}
		ttl = time.Duration(secs) * time.Second
	}
	ttl = min(ttl, s.cfg.Auth.MaxTTL.D(), time.Until(p.Expires).Truncate(time.Second))
	if ttl <= 0 {
		return nil, oerr(http.StatusBadRequest, "invalid_grant", "the subject token is about to expire")
	}
	iss, err := token.NewTypedIssuer(s.key, token.TypTask, s.cfg.Auth.Issuer, s.cfg.Auth.Audience, s.cfg.Auth.MaxTTL.D(), nil)
	if err != nil {
		return nil, err
	}
	if f.Get("purpose") != "" {
		return nil, oerr(http.StatusBadRequest, "invalid_request", "purpose: a task from an external token has none (pass the user's request as a signed intent)")
	}
	t := token.Task{Agent: p.Agent, User: p.User, Tools: strings.Fields(f.Get("scope")), Budget: budget, JKT: jkt, Parent: p.CredentialID}
	tok, issued, err := iss.IssueTask(t, ttl)
	if err != nil {
		return nil, oerr(http.StatusBadRequest, "invalid_scope", "%v", err)
	}
	e.Task = issued.ID
	e.Detail = fmt.Sprintf("exchanged %s (%s) for task %s: tools %v, budget %d, bound to DPoP key %s, token %s, until %s",
		p.CredentialID, p.Method, issued.ID, issued.Tools, issued.Budget, jkt, issued.TokenID, issued.Expires.UTC().Format(time.RFC3339))
	return map[string]any{
		"access_token": tok, "issued_token_type": tokenTypeAccess, "token_type": "DPoP",
		"expires_in": int(time.Until(issued.Expires).Seconds()), "scope": strings.Join(issued.Tools, " "),
	}, nil
}
