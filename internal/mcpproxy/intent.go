package mcpproxy

import (
	"crypto/sha256"
	"fmt"
	"net/http"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/identity"
	"github.com/portcullis-dev/portcullis/internal/provenance"
	"github.com/portcullis-dev/portcullis/internal/reason"
	"github.com/portcullis-dev/portcullis/internal/screen"
	"github.com/portcullis-dev/portcullis/internal/token"
)

// HeaderIntent carries a signed intent token (token.Intent): what the user
// asked the agent for, set by the orchestrator on its HTTP requests. The
// model writes tool calls, not headers, so it cannot forge or change it.
const HeaderIntent = "Portcullis-Intent"

// MetaIntent is the same token in a request's _meta, for clients that
// cannot set headers (stdio, `portcullis wrap`): set by the orchestrator's
// MCP client, never by the model. It is verified before the request goes
// on and blanked before the request reaches an upstream.
const MetaIntent = "dev.portcullis/intent"

// IntentVerifier checks intent tokens.
type IntentVerifier interface {
	VerifyIntent(raw string) (token.Intent, error)
}

var _ IntentVerifier = (*token.Verifier)(nil)

// maxIntents bounds the intents one session takes.
const maxIntents = 32

// acceptIntent verifies raw for pr and gives its text to the session's
// provenance as the user's request. An intent is taken once per session
// (the same header again is not verified again, so it may outlive its
// token's expiry within the session that took it); the acceptance is
// audited (with the request's SHA-256, not its text).
func (p *Proxy) acceptIntent(s *Session, pr *identity.Principal, raw, remote string) *refusal {
	key := sha256.Sum256([]byte(raw))
	s.mu.Lock()
	seen := s.intents[key]
	s.mu.Unlock()
	if seen {
		return nil
	}
	v := p.opts.Intents
	if v == nil {
		return deny(reason.InvalidIntent).withDetail("this gateway takes no intent tokens")
	}
	in, err := v.VerifyIntent(raw)
	switch {
	case err != nil:
		return deny(reason.InvalidIntent).withDetail(err.Error())
	case in.Agent != pr.Agent:
		return deny(reason.InvalidIntent).withDetail("the intent is for agent " + in.Agent)
	case in.User != "" && pr.User != "" && in.User != pr.User:
		return deny(reason.InvalidIntent).withDetail("the intent is for another user")
	}
	s.mu.Lock()
	taken := s.intents[key]
	full := len(s.intents) >= maxIntents
	if !taken && !full {
		if s.intents == nil {
			s.intents = map[[32]byte]bool{}
		}
		s.intents[key] = true
	}
	s.mu.Unlock()
	switch {
	case taken:
		return nil
	case full:
		return deny(reason.InvalidIntent).withDetail(fmt.Sprintf("a session takes at most %d intents", maxIntents))
	}
	s.prov.Observe(screen.Normalize(in.Text).Text, provenance.Intent)
	e := audit.New(audit.TypeSessionLabel, audit.OutcomeAllow, reason.IntentAccepted, p.opts.Now(),
		audit.Subject{Agent: pr.Agent, User: in.User, Task: pr.Task, Credential: in.TokenID, SessionID: s.id, RequestID: newRequestID(), RemoteAddr: remote})
	e.Detail = fmt.Sprintf("intent sha256:%x", sha256.Sum256([]byte(in.Text)))
	p.recordBackground(e)
	return nil
}

// intentFromHeader takes the request's intent header, if any; on a refusal
// it answers the request and returns false.
func (f *httpFront) intentFromHeader(w http.ResponseWriter, r *http.Request, s *Session, pr *identity.Principal) bool {
	raw := r.Header.Get(HeaderIntent)
	if raw == "" {
		return true
	}
	ref := f.p.acceptIntent(s, pr, raw, r.RemoteAddr)
	if ref == nil {
		return true
	}
	e := audit.New(audit.TypeAuthn, audit.OutcomeDeny, ref.code, f.p.opts.Now(),
		audit.Subject{Agent: pr.Agent, Credential: pr.CredentialID, SessionID: s.id, RequestID: newRequestID(), RemoteAddr: r.RemoteAddr})
	e.Detail = ref.detail
	f.p.recordBackground(e)
	f.p.opts.Metrics.Refusal(ref.code)
	writeJSON(w, http.StatusForbidden, ref.message(nil, e.RequestID))
	return false
}
