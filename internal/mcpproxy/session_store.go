package mcpproxy

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/identity"
	"github.com/portcullis-dev/portcullis/internal/reason"
	"github.com/portcullis-dev/portcullis/internal/store"
)

// Sessions kept in the store (Options.Sessions): an HTTP session outlives
// the gateway that opened it. When an agent's request names a session this
// gateway does not hold, the session is taken up from the store, for the
// same agent and user only, unless the agent ended it or it was idle longer
// than limits.session_idle_timeout: what initialize agreed and the
// data-flow labels the session acquired come with it. What stays behind:
// the provenance memory (a session taken up fails closed for provenance:
// whatever it did not see is untrusted), the links to upstreams (opened
// again, so an upstream's own session state does not follow), requests in
// flight and intents taken (verified again).
//
// The labels are the security state that must never be shed by moving: a
// new label is written to the store before the result that gave it
// reaches the agent, and in a fleet (Options.SharedSessions) each request
// reads its session's labels and marks first, so that a session served by
// several gateways at once (no session affinity) is decided with every
// label any of them gave it, and every gateway's provenance memory of a
// session served elsewhere too fails closed.

// SessionStore keeps agent sessions (the store).
type SessionStore interface {
	PutSession(ctx context.Context, a store.AgentSession) error
	Session(ctx context.Context, id string) (store.AgentSession, bool, error)
	SessionState(ctx context.Context, id string) (store.SessionState, error)
	TakeUpSession(ctx context.Context, id string, now, notBefore time.Time) (bool, error)
	SeenSession(ctx context.Context, id string, t time.Time) error
	EndSession(ctx context.Context, id string, t time.Time) error
	AddSessionLabels(ctx context.Context, id string, labels []string) error
}

var _ SessionStore = (*store.DB)(nil)

// storeWait bounds one session read or write in the store.
const storeWait = 5 * time.Second

// kept is a session's state in the store.
type kept struct {
	// seen is when the session's last use was written (unix nanoseconds).
	seen atomic.Int64
	// mu serialises label writes: a result waits for the write of every
	// label it gives, even one a concurrent call of the session is writing.
	mu sync.Mutex
	// stored are the labels known to be in the store.
	stored map[string]bool
}

// missing returns the labels not known to be stored. Called with mu held.
func (k *kept) missing(labels []string) []string {
	var out []string
	for _, l := range labels {
		if !k.stored[l] {
			out = append(out, l)
		}
	}
	return out
}

// confirm records labels as stored. Called with mu held.
func (k *kept) confirm(labels []string) {
	if k.stored == nil {
		k.stored = map[string]bool{}
	}
	for _, l := range labels {
		k.stored[l] = true
	}
}

// keeps reports whether s is kept in the store.
func (p *Proxy) keeps(s *Session) bool { return p.opts.Sessions != nil && s != nil && !s.stdio }

func storeContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), storeWait)
}

func storeRefusal(what string, err error) *refusal {
	return deny(reason.StoreUnavailable).withDetail(what + ": " + truncate(err.Error(), 200))
}

// keepSession records s, just initialized, in the store; the agent's
// answer waits for it, so a session the agent was told of can be taken up.
func (p *Proxy) keepSession(ctx context.Context, s *Session) error {
	if !p.keeps(s) {
		return nil
	}
	now := time.Now()
	s.initMu.Lock()
	a := store.AgentSession{ID: s.id, Agent: s.agent, User: s.user, Version: s.version,
		ClientCaps: s.clientCaps, ClientInfo: s.clientInfo, Created: now, Seen: now}
	s.initMu.Unlock()
	ctx, cancel := storeContext(ctx)
	defer cancel()
	if err := p.opts.Sessions.PutSession(ctx, a); err != nil {
		return storeRefusal("the session could not be kept", err)
	}
	s.kept.seen.Store(now.UnixNano())
	return nil
}

// keepLabels makes sure labels, which s has, are in the store before what
// gave them reaches the agent (waiting for a concurrent call's write of
// the same label); when that fails, what gave them is withheld, and the
// session's next request writes them first or is refused.
func (p *Proxy) keepLabels(s *Session, labels []string) *refusal {
	if !p.keeps(s) || len(labels) == 0 {
		return nil
	}
	s.kept.mu.Lock()
	defer s.kept.mu.Unlock()
	missing := s.kept.missing(labels)
	if len(missing) == 0 {
		return nil
	}
	ctx, cancel := storeContext(context.Background())
	defer cancel()
	if err := p.opts.Sessions.AddSessionLabels(ctx, s.id, missing); err != nil {
		// The call was allowed and relayed: its answer cannot be served.
		return unavailable(reason.StoreUnavailable).withDetail("the session's new labels could not be kept: " + truncate(err.Error(), 200))
	}
	s.kept.confirm(missing)
	return nil
}

// syncSession brings s up to date with the store before a request: labels
// not written yet are written again and, when other gateways serve the
// same sessions, what they gave it is read.
func (p *Proxy) syncSession(ctx context.Context, s *Session) *refusal {
	if !p.keeps(s) {
		return nil
	}
	if r := p.keepLabels(s, s.labels.list()); r != nil { // any a failed write left behind
		return deny(reason.StoreUnavailable).withDetail(r.detail)
	}
	p.noteSeen(s)
	if !p.opts.SharedSessions {
		return nil
	}
	ctx, cancel := storeContext(ctx)
	defer cancel()
	st, err := p.opts.Sessions.SessionState(ctx, s.id)
	if err != nil {
		return storeRefusal("the session's state could not be read", err)
	}
	if !st.Found || st.Ended {
		go p.sessions.remove(s) // the next request is told the session is gone
		return deny(reason.SessionEnded).withDetail("the agent ended the session through another gateway")
	}
	if st.Moved {
		s.prov.Skip()
	}
	s.labels.add(st.Labels)
	s.kept.mu.Lock()
	s.kept.confirm(st.Labels)
	s.kept.mu.Unlock()
	return nil
}

// noteSeen writes that s was used, at most every eighth of the idle
// timeout, off the request's path: a session is taken up only if it was
// used anywhere within the idle timeout.
func (p *Proxy) noteSeen(s *Session) {
	now := time.Now()
	last := s.kept.seen.Load()
	if time.Duration(now.UnixNano()-last) < p.opts.Limits.SessionIdleTimeout.D()/8 || !s.kept.seen.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	go func() {
		ctx, cancel := storeContext(context.Background())
		defer cancel()
		if err := p.opts.Sessions.SeenSession(ctx, s.id, now); err != nil {
			p.opts.Log.Warn("session use not written to the store", "session", s.id, "err", err)
		}
	}()
}

// endSession marks s ended in the store (the agent ended it): no gateway
// takes it up again.
func (p *Proxy) endSession(ctx context.Context, s *Session) {
	if !p.keeps(s) {
		return
	}
	ctx, cancel := storeContext(ctx)
	defer cancel()
	if err := p.opts.Sessions.EndSession(ctx, s.id, time.Now()); err != nil {
		p.opts.Log.Warn("session end not written to the store; it could be taken up again by its agent", "session", s.id, "err", err)
	}
}

// errNoSuchSession: the store has no live session by that ID.
var errNoSuchSession = errors.New("no such session")

// takeUp resumes session id, which this gateway does not hold, from the
// store for pr. It returns errNoSuchSession when there is none to take up
// (unknown, ended, idle too long), errSessionHijack when it is another
// agent's or user's, a *refusal when the store failed.
func (p *Proxy) takeUp(ctx context.Context, id string, pr *identity.Principal, remote string) (*Session, error) {
	st := p.opts.Sessions
	if st == nil || !validSessionID(id) {
		return nil, errNoSuchSession
	}
	ctx, cancel := storeContext(ctx)
	defer cancel()
	a, ok, err := st.Session(ctx, id)
	switch {
	case err != nil:
		return nil, storeRefusal("the session could not be read", err)
	case !ok || a.Ended:
		return nil, errNoSuchSession
	case a.Agent != pr.Agent || a.User != pr.User:
		return nil, errSessionHijack
	}
	now := time.Now()
	ok, err = st.TakeUpSession(ctx, id, now, now.Add(-p.opts.Limits.SessionIdleTimeout.D()))
	if err != nil {
		return nil, storeRefusal("the session could not be taken up", err)
	}
	if !ok {
		return nil, errNoSuchSession
	}
	state, err := st.SessionState(ctx, id)
	if err != nil {
		return nil, storeRefusal("the session's state could not be read", err)
	}
	if !state.Found || state.Ended { // ended or pruned since it was read
		return nil, errNoSuchSession
	}
	s := p.newSession(id, pr, false)
	s.opened, s.version, s.clientCaps, s.clientInfo = true, a.Version, a.ClientCaps, a.ClientInfo
	s.labels.add(state.Labels)
	s.kept.confirm(state.Labels)
	// Its provenance memory stayed where it was served: whatever this
	// gateway did not see is untrusted.
	s.prov.Skip()
	s.kept.seen.Store(now.UnixNano())
	s, fresh, err := p.sessions.adopt(s, p.opts.Limits.MaxSessions)
	if err != nil {
		return nil, deny(reason.TooManySessions)
	}
	if fresh {
		p.opts.Metrics.Sessions(1)
		e := audit.New(audit.TypeSessionLabel, audit.OutcomeInfo, reason.SessionTakenUp, p.opts.Now(),
			audit.Subject{Agent: pr.Agent, User: pr.User, Task: pr.Task, Credential: pr.CredentialID, SessionID: id, RequestID: newRequestID(), RemoteAddr: remote})
		e.Labels = state.Labels
		e.Detail = "taken up from the store (opened " + a.Created.UTC().Format(time.RFC3339) + "); provenance memory not carried: fails closed"
		p.recordBackground(e)
	}
	return s, nil
}

// validSessionID reports whether id could be one of newSessionID's (32
// lower-case hex digits): anything else is not looked for in the store.
func validSessionID(id string) bool {
	if len(id) != 32 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
