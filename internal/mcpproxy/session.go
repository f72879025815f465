package mcpproxy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portcullis-dev/portcullis/internal/identity"
	"github.com/portcullis-dev/portcullis/internal/provenance"
	"github.com/portcullis-dev/portcullis/internal/screen"
	"github.com/portcullis-dev/portcullis/internal/wire"
)

// Session limits.
const (
	// maxOutboxBacklog bounds messages kept for an agent that has no open
	// stream for them (HTTP without a GET stream); the oldest go first.
	maxOutboxBacklog = 256
	// maxPendingToAgent bounds requests an agent has not answered yet.
	maxPendingToAgent = 64
	// sweepEvery is how often idle sessions are looked for.
	sweepEvery = 30 * time.Second
)

var (
	errSessionHijack   = errors.New("session belongs to another agent")
	errTooManySessions = errors.New("too many sessions")
	errSessionClosed   = errors.New("session closed")
)

// Session is one agent session: what initialize agreed, the sessions with
// upstreams it opened, its data-flow labels and what is in flight.
type Session struct {
	id    string
	p     *Proxy
	agent string // bound at creation: another agent's credential is refused
	user  string // and another user's (many users may share one agent)
	// stdio: the wrap front's only session (no idle expiry).
	stdio     bool
	principal atomic.Pointer[identity.Principal]
	lastSeen  atomic.Int64 // unix nanoseconds
	// logLevel is the least severe log level the agent asked for
	// (logRank; 0: it did not ask): log messages below it are not
	// relayed to it.
	logLevel atomic.Int32

	// What the agent said at initialize.
	initMu     sync.Mutex
	opened     bool
	version    string // the protocol version agreed with the agent
	clientCaps []byte // its capabilities object, as sent
	clientInfo []byte // its clientInfo object, as sent

	out outbox

	mu    sync.Mutex
	links map[*Upstream]*link
	// cachedView is what the session was last served (see view).
	cachedView *sessionView
	inflight   map[string]*call       // by the agent's request id
	toAgent    map[string]*serverCall // requests sent to the agent, by the gateway's id
	agentTasks map[string]*link       // tasks the agent runs for an upstream, by task id
	closed     bool
	// hungUp: the agent can send nothing more (wrap's input ended), so
	// requests to it can never be answered.
	hungUp  bool
	intents map[[32]byte]bool // SHA-256 of the intent tokens taken (acceptIntent)

	calls  atomic.Int32 // agent requests being served
	nextID atomic.Int64 // ids of the gateway's requests to the agent
	labels sessionLabels
	// prov remembers where the session met each value (argument
	// provenance).
	prov  provenance.Tracker
	token sessionToken
	// kept is its state in the store (Options.Sessions).
	kept kept
	done chan struct{}
}

func newSessionID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (s *Session) touch() { s.lastSeen.Store(time.Now().UnixNano()) }

// ID is the session's identifier (the Mcp-Session-Id of HTTP sessions).
func (s *Session) ID() string { return s.id }

// bind checks that pr may use the session and makes it the session's
// current principal (a refreshed credential of the same agent).
func (s *Session) bind(pr *identity.Principal) error {
	if pr.Agent != s.agent || pr.User != s.user {
		return errSessionHijack
	}
	s.principal.Store(pr)
	s.touch()
	return nil
}

// notify sends a message to the agent outside any request.
func (s *Session) notify(msg []byte) { s.out.send(msg) }

// wantsLog reports whether log message m (notifications/message) is at
// or above the level the agent set.
func (s *Session) wantsLog(m *wire.Message) bool {
	min := s.logLevel.Load()
	if min == 0 {
		return true
	}
	level, _ := wire.StringView(m.Raw, m.Param("level"))
	return logRank[level] >= min
}

// linkTo returns the session's link to u if one is open.
func (s *Session) linkTo(u *Upstream) *link {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.links[u]
}

// invalidateLists forgets what the session's links listed (all of them for
// u nil), so the next list or resolution asks again.
func (s *Session) invalidateLists(u *Upstream) {
	s.mu.Lock()
	links := make([]*link, 0, len(s.links))
	for up, l := range s.links {
		if u == nil || up == u {
			links = append(links, l)
		}
	}
	s.mu.Unlock()
	for _, l := range links {
		l.invalidate()
	}
}

// track registers an in-flight request (for cancellation by the agent).
func (s *Session) track(c *call) {
	key := string(c.msg.IDBytes())
	s.mu.Lock()
	s.inflight[key] = c
	s.mu.Unlock()
}

func (s *Session) untrack(c *call) {
	key := string(c.msg.IDBytes())
	s.mu.Lock()
	if s.inflight[key] == c {
		delete(s.inflight, key)
	}
	s.mu.Unlock()
}

func (s *Session) inflightCall(id []byte) *call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inflight[string(id)]
}

// close ends the session: its links to upstreams are closed (or released,
// when shared) and its streams end.
func (s *Session) close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	links := s.links
	s.links = map[*Upstream]*link{}
	pending := s.toAgent
	s.toAgent = map[string]*serverCall{}
	s.mu.Unlock()
	for u, l := range links {
		u.release(l, s)
	}
	for _, sc := range pending {
		sc.fail(errSessionClosed)
	}
	s.out.close()
	close(s.done)
	s.p.opts.Metrics.Sessions(-1)
}

// hangUp notes that the agent can send nothing more: the requests the
// session has sent it fail at once, and it is sent no more (the calls
// waiting on them end now, not at their timeout).
func (s *Session) hangUp() {
	s.mu.Lock()
	s.hungUp = true
	pending := s.toAgent
	s.toAgent = map[string]*serverCall{}
	s.mu.Unlock()
	for _, sc := range pending {
		sc.fail(errAgentGone)
	}
}

// outbox carries messages to an agent outside any request: on the HTTP
// session's GET stream (kept briefly when none is open), or on stdio.
type outbox struct {
	mu      sync.Mutex
	w       func([]byte) error
	backlog [][]byte
	closed  bool
	// Dropped counts messages lost because the backlog was full.
	Dropped atomic.Int64
}

func (o *outbox) send(msg []byte) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return
	}
	if o.w != nil {
		if err := o.w(msg); err == nil {
			return
		}
		o.w = nil // the stream broke: keep the message for the next one
	}
	if len(o.backlog) >= maxOutboxBacklog {
		o.backlog = o.backlog[1:]
		o.Dropped.Add(1)
	}
	o.backlog = append(o.backlog, msg)
}

// attach makes w the stream for outside messages, first sending what was
// kept. It returns false if another stream is attached or the session is
// closed.
func (o *outbox) attach(w func([]byte) error) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.w != nil || o.closed {
		return false
	}
	for len(o.backlog) > 0 {
		if err := w(o.backlog[0]); err != nil {
			return false
		}
		o.backlog = o.backlog[1:]
	}
	o.w = w
	return true
}

// detach removes w if it is the attached stream.
func (o *outbox) detach() {
	o.mu.Lock()
	o.w = nil
	o.mu.Unlock()
}

func (o *outbox) close() {
	o.mu.Lock()
	o.closed = true
	o.w = nil
	o.backlog = nil
	o.mu.Unlock()
}

// sessionTable holds the open agent sessions.
type sessionTable struct {
	mu   sync.Mutex
	byID map[string]*Session
}

func (t *sessionTable) init() { t.byID = map[string]*Session{} }

// newSession makes session id of pr (not in the table yet).
func (p *Proxy) newSession(id string, pr *identity.Principal, stdio bool) *Session {
	s := &Session{
		id: id, p: p, agent: pr.Agent, user: pr.User, stdio: stdio,
		links: map[*Upstream]*link{}, inflight: map[string]*call{}, toAgent: map[string]*serverCall{},
		done: make(chan struct{}),
	}
	s.principal.Store(pr)
	s.touch()
	if pr.TaskPurpose != "" {
		// What the task's starter asked for is trusted: an address or host
		// it names is the user's, whoever repeats it later.
		s.prov.Observe(screen.Normalize(pr.TaskPurpose).Text, provenance.Intent)
	}
	return s
}

// openSessionFor creates a session for pr.
func (p *Proxy) openSessionFor(pr *identity.Principal, stdio bool) (*Session, error) {
	s := p.newSession(newSessionID(), pr, stdio)
	t := &p.sessions
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.byID) >= p.opts.Limits.MaxSessions {
		return nil, errTooManySessions
	}
	t.byID[s.id] = s
	p.opts.Metrics.Sessions(1)
	return s, nil
}

// adopt adds s, taken up from the store, unless a session by its ID is
// there already (taken up by a concurrent request): that one is returned,
// fresh false.
func (t *sessionTable) adopt(s *Session, limit int) (_ *Session, fresh bool, _ error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if have := t.byID[s.id]; have != nil {
		return have, false, nil
	}
	if len(t.byID) >= limit {
		return nil, false, errTooManySessions
	}
	t.byID[s.id] = s
	return s, true, nil
}

func (t *sessionTable) get(id string) *Session {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.byID[id]
}

func (t *sessionTable) remove(s *Session) {
	t.mu.Lock()
	if t.byID[s.id] == s {
		delete(t.byID, s.id)
	}
	t.mu.Unlock()
	s.close()
	if s.p != nil {
		s.p.forget(s.id)
	}
}

func (t *sessionTable) all() []*Session {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]*Session, 0, len(t.byID))
	for _, s := range t.byID {
		out = append(out, s)
	}
	return out
}

// expire closes HTTP sessions idle longer than the limit, until ctx ends.
func (t *sessionTable) expire(ctx context.Context, p *Proxy) {
	idle := p.opts.Limits.SessionIdleTimeout.D()
	tick := time.NewTicker(min(sweepEvery, max(idle/4, time.Second)))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			for _, s := range t.all() {
				if !s.stdio && s.calls.Load() == 0 && now.Sub(time.Unix(0, s.lastSeen.Load())) > idle {
					p.opts.Log.Debug("agent session idle; closed", "session", s.id, "agent", s.agent)
					t.remove(s)
				}
			}
		}
	}
}

func (t *sessionTable) closeAll() {
	for _, s := range t.all() {
		t.remove(s)
	}
}

// listChanged is the notification that a list changed ("tools", ...).
func listChanged(kind string) []byte {
	return wire.NewNotification("notifications/"+kind+"/list_changed", nil)
}
