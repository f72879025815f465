package mcpproxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/identity"
)

// Authenticator establishes the principal of an HTTP request. Today the
// gateway's agent tokens; SVIDs over mTLS and task tokens slot in here.
type Authenticator interface {
	Authenticate(r *http.Request) (*identity.Principal, error)
}

// principalKey is the TokenInfo.Extra key carrying the *identity.Principal
// from the HTTP front to the enforcement middleware.
const principalKey = "portcullis.principal"

type principalCtxKey struct{}

// HTTPHandler serves MCP streamable HTTP for agents. Before the MCP library
// sees a request it is authenticated and its framing checked (size, depth,
// batch size, known methods); every refusal is audited.
func (p *Proxy) HTTPHandler(authn Authenticator) http.Handler {
	sdk := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return p.server }, &mcp.StreamableHTTPOptions{
		Logger:              p.opts.Log,
		SessionTimeout:      p.opts.Limits.SessionIdleTimeout.D(),
		MaxRequestBodyBytes: p.opts.Limits.MaxMessageBytes,
	})
	// The SDK binds sessions to TokenInfo.UserID and passes TokenInfo to the
	// middleware with each request; the verifier only lifts the principal the
	// front already established.
	inner := auth.RequireBearerToken(func(ctx context.Context, _ string, _ *http.Request) (*auth.TokenInfo, error) {
		pr, ok := ctx.Value(principalCtxKey{}).(*identity.Principal)
		if !ok {
			return nil, auth.ErrInvalidToken
		}
		return &auth.TokenInfo{UserID: pr.Agent, Expiration: pr.Expires, Extra: map[string]any{principalKey: pr}}, nil
	}, nil)(sdk)
	return &front{p: p, authn: authn, next: inner}
}

// PrincipalFromTokenInfo is the PrincipalFunc for the HTTP front.
func PrincipalFromTokenInfo(_ context.Context, req mcp.Request) (*identity.Principal, error) {
	ex := req.GetExtra()
	if ex == nil || ex.TokenInfo == nil {
		return nil, errors.New("no credential")
	}
	pr, ok := ex.TokenInfo.Extra[principalKey].(*identity.Principal)
	if !ok {
		return nil, errors.New("no principal")
	}
	if !pr.Expires.IsZero() && time.Now().After(pr.Expires) {
		return nil, errors.New("credential expired")
	}
	return pr, nil
}

type front struct {
	p     *Proxy
	authn Authenticator
	next  http.Handler
}

func (f *front) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodPost, http.MethodGet, http.MethodDelete:
	default:
		w.Header().Set("Allow", "GET, POST, DELETE")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	pr, err := f.authn.Authenticate(r)
	if err != nil {
		f.refuseAuthn(w, r, err)
		return
	}
	if r.Method == http.MethodPost {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, f.p.opts.Limits.MaxMessageBytes))
		if err != nil {
			f.refuseMessage(w, r, pr, nil, ErrTooLarge)
			return
		}
		if _, err := CheckMessage(body, f.limits()); err != nil {
			f.refuseMessage(w, r, pr, body, err)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	// The SDK's bearer middleware inside only lifts the principal from the
	// context; it needs a bearer-shaped header whatever the scheme (DPoP)
	// the credential came with, so the header is normalised, never trusted.
	r = r.WithContext(context.WithValue(r.Context(), principalCtxKey{}, pr))
	r.Header.Set("Authorization", "Bearer authenticated-by-portcullis")
	f.next.ServeHTTP(w, r)
}

func (f *front) limits() MessageLimits {
	l := f.p.opts.Limits
	return MessageLimits{MaxBytes: l.MaxMessageBytes, MaxDepth: l.MaxJSONDepth, MaxBatch: l.MaxBatch}
}

func (f *front) refuseAuthn(w http.ResponseWriter, r *http.Request, err error) {
	e := audit.NewEvent(audit.TypeAuthn, f.p.opts.Now())
	e.RequestID, e.RemoteAddr, e.Code, e.Detail = newRequestID(), r.RemoteAddr, ReasonUnauthenticated, err.Error()
	f.p.recordBackground(e)
	f.p.opts.Metrics.Refusal(ReasonUnauthenticated)
	w.Header().Set("WWW-Authenticate", `Bearer realm="portcullis", error="invalid_token"`)
	writeJSON(w, http.StatusUnauthorized, map[string]string{"error": ReasonUnauthenticated, "request_id": e.RequestID})
}

// refuseMessage answers a message that failed framing checks with a JSON-RPC
// error (echoing the request's id when it could be read) and audits it.
func (f *front) refuseMessage(w http.ResponseWriter, r *http.Request, pr *identity.Principal, body []byte, cause error) {
	reason, code := refusal(cause)
	status := http.StatusBadRequest
	switch reason {
	case "message_too_large":
		status = http.StatusRequestEntityTooLarge
	case ReasonMethodNotAllowed:
		status = http.StatusOK
	}
	e := audit.NewEvent(audit.TypeProtocol, f.p.opts.Now())
	e.RequestID, e.RemoteAddr, e.Code, e.Detail = newRequestID(), r.RemoteAddr, reason, truncate(cause.Error(), 300)
	e.Agent, e.Credential, e.SessionID = pr.Agent, pr.CredentialID, r.Header.Get("Mcp-Session-Id")
	var env Envelope
	if body != nil && json.Unmarshal(body, &env) == nil {
		e.Method = truncate(env.Method, 100)
	}
	f.p.recordBackground(e)
	f.p.opts.Metrics.Refusal(reason)
	writeJSON(w, status, refusalBody(env.ID, code, reason, e.RequestID))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
