package mcpproxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/reason"
	"github.com/portcullis-dev/portcullis/internal/transport"
)

// Errors opening a session with an upstream.
var (
	ErrUpstreamDown     = errors.New("upstream unavailable")
	ErrUpstreamSessions = errors.New("upstream at its session limit")
	// errClientRefused: the server answered initialize with an error
	// (the agent's client identity, version or capabilities).
	errClientRefused = errors.New("the upstream refused this client")
)

// Supervision bounds.
const (
	minBackoff    = 250 * time.Millisecond
	maxBackoff    = 30 * time.Second
	stableAfter   = 30 * time.Second
	probeTimeout  = 5 * time.Second
	initTimeout   = 30 * time.Second
	listTimeout   = 30 * time.Second
	keepAliveTick = 30 * time.Second
)

// Upstream is one MCP server behind the gateway. Agents reach it through
// links (sessions with it) opened per agent session, per agent, per user or
// once for all, as configured. A supervisor session, the probe, keeps
// watching it: it decides readiness, pins what the server offers (trust on
// first use sees it here first), notices definition changes and restarts a
// server that stops answering.
type Upstream struct {
	Name string

	p       *Proxy
	cfg     config.Upstream
	prefix  string
	dial    transport.Dialer
	timeout time.Duration
	slots   *slots
	// queueTimeout bounds a call's wait for one of the slots.
	queueTimeout time.Duration
	log          *slog.Logger

	ready     chan struct{} // closed after the first probe
	readyOnce sync.Once
	healthy   atomic.Bool
	snapshot  atomic.Pointer[linkLists] // what the probe last listed
	kick      chan struct{}             // re-list now
	linkSeq   atomic.Int64
	restarts  atomic.Int64
	downUntil atomic.Int64 // unix ns: no new links before (a dial just failed)

	mu     sync.Mutex
	shared map[string]*link // links shared by several agent sessions, by isolation key
	// refusals are the server's refusals of the client a link is opened
	// with, by what the link waits on (a session's own, or an isolation
	// key) and protocol version: see linkFor.
	refusals map[string]clientRefusal
	opening  map[string]*pendingLink
	open     int
	spares   []transport.Conn
	stop     bool
}

type pendingLink struct {
	done chan struct{}
	l    *link
	err  error
}

func newUpstream(p *Proxy, cfg config.Upstream, dial transport.Dialer) *Upstream {
	timeout := p.opts.Limits.CallTimeout.D()
	if cfg.CallTimeout > 0 {
		timeout = cfg.CallTimeout.D()
	}
	maxc := p.opts.Limits.MaxCallsPerUpstream
	if cfg.MaxConcurrentCalls > 0 {
		maxc = cfg.MaxConcurrentCalls
	}
	maxq := p.opts.Limits.MaxQueuedCallsPerUpstream
	if cfg.MaxQueuedCalls != 0 {
		maxq = cfg.MaxQueuedCalls
	}
	queueTimeout := p.opts.Limits.QueueTimeout.D()
	if cfg.QueueTimeout > 0 {
		queueTimeout = cfg.QueueTimeout.D()
	}
	return &Upstream{
		Name: cfg.Name, p: p, cfg: cfg, prefix: cfg.Prefix(), dial: dial, timeout: timeout,
		slots: newSlots(maxc, maxq), queueTimeout: queueTimeout, log: p.opts.Log.With("upstream", cfg.Name),
		ready: make(chan struct{}), kick: make(chan struct{}, 1),
		shared: map[string]*link{}, opening: map[string]*pendingLink{},
	}
}

// Load reports the upstream's calls in flight and waiting, and its bounds.
func (u *Upstream) Load() (used, capacity, queued, maxQueue int) {
	l := u.slots.load()
	return l.Used, l.Capacity, l.Queued, l.MaxQueue
}

// Healthy reports whether the upstream answered its last probe.
func (u *Upstream) Healthy() bool { return u.healthy.Load() }

// Restarts is how many times the probe session was reopened after ending.
func (u *Upstream) Restarts() int64 { return u.restarts.Load() }

// Ready is closed once the upstream was first probed (successfully or not).
func (u *Upstream) Ready() <-chan struct{} { return u.ready }

func (u *Upstream) isolation() string {
	if u.cfg.Isolation == "" {
		return config.IsolationSession
	}
	return u.cfg.Isolation
}

// openLinks is how many sessions with the upstream agents hold (the
// probe's not counted).
func (u *Upstream) openLinks() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.open
}

// reprobe asks the probe to list again.
func (u *Upstream) reprobe() {
	select {
	case u.kick <- struct{}{}:
	default:
	}
}

// run keeps the probe session open, restarting it with exponential
// backoff when it ends, until ctx ends; then it closes every link.
func (u *Upstream) run(ctx context.Context) {
	defer u.closeAll()
	go u.sweep(ctx)
	backoff := minBackoff
	for ctx.Err() == nil {
		started := time.Now()
		err := u.probe(ctx)
		u.healthy.Store(false)
		u.readyOnce.Do(func() { close(u.ready) })
		if ctx.Err() != nil {
			return
		}
		if time.Since(started) > stableAfter {
			backoff = minBackoff
		}
		u.restarts.Add(1)
		u.log.Warn("upstream probe ended; restarting", "err", err, "backoff", backoff)
		u.p.upstreamEvent(u, reason.Restarting, fmt.Sprintf("exited: %v; restarting in %s", err, backoff))
		select {
		case <-time.After(backoff):
		case <-u.kick: // authorized, say: try now
		case <-ctx.Done():
			return
		}
		backoff = min(backoff*2, maxBackoff)
	}
}

// probe opens the supervisor session, offering every client capability so
// that the server shows every tool it might offer any agent, and lists
// (admitting tools through pinning) now, on every list change, and when
// kicked; it pings the server periodically.
func (u *Upstream) probe(ctx context.Context) error {
	hello := probeClient()
	if v := u.cfg.ProtocolVersion; v != "" {
		hello.version = v
	}
	l, err := u.connect(ctx, hello, probeKey)
	if err != nil {
		return err
	}
	defer l.close()
	if err := u.relist(ctx, l); err != nil {
		return err
	}
	u.healthy.Store(true)
	u.downUntil.Store(0)
	u.readyOnce.Do(func() { close(u.ready) })
	u.p.upstreamEvent(u, reason.Started, l.serverName())
	u.log.Info("upstream connected", "server", l.serverName(), "protocol", l.version)
	u.fillSpares(ctx)
	tick := time.NewTicker(keepAliveTick)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-l.conn.Done():
			return errors.New("session ended")
		case <-l.changed:
			if err := u.relist(ctx, l); err != nil {
				return err
			}
		case <-u.kick:
			if err := u.relist(ctx, l); err != nil {
				return err
			}
		case <-tick.C:
			pctx, cancel := context.WithTimeout(ctx, probeTimeout)
			err := l.ping(pctx)
			cancel()
			if err != nil {
				return fmt.Errorf("ping: %w", err)
			}
		}
	}
}

// relist fetches what the probe session offers and publishes it as the
// upstream's snapshot (for readiness, collisions and the AI-BOM); a change
// tells agent sessions to list again.
func (u *Upstream) relist(ctx context.Context, l *link) error {
	l.invalidate()
	lctx, cancel := context.WithTimeout(ctx, listTimeout)
	defer cancel()
	lists, err := l.lists(lctx)
	if err != nil {
		return fmt.Errorf("list: %w", err)
	}
	old := u.snapshot.Swap(lists)
	if old != nil && old.digest != lists.digest {
		for _, s := range u.p.sessions.all() {
			if s.linkTo(u) != nil {
				s.invalidateLists(u)
				s.notify(listChanged("tools"))
			}
		}
	}
	return nil
}

// linkFor returns the link session s uses to reach u, opening it if need
// be (one per agent session, agent, user or for all, by isolation).
func (u *Upstream) linkFor(ctx context.Context, s *Session) (*link, error) {
	if l := s.linkTo(u); l != nil && l.alive() {
		return l, nil
	}
	if until := u.downUntil.Load(); until != 0 && time.Now().UnixNano() < until {
		return nil, ErrUpstreamDown
	}
	key := u.isolationKey(s)
	hello := u.clientFor(s, key)
	u.mu.Lock()
	if u.stop {
		u.mu.Unlock()
		return nil, ErrUpstreamDown
	}
	if l := u.liveShared(key); l != nil {
		l.attach(s)
		u.mu.Unlock()
		return s.adopt(u, l), nil
	}
	wait := key
	if wait == "" {
		wait = "s:" + s.id
	}
	if pl := u.opening[wait]; pl != nil {
		u.mu.Unlock()
		return u.awaitOpening(ctx, pl, s, key)
	}
	// The server's refusals of the client this link would be opened with:
	// the session's own, or for a shared link the gateway's with the
	// protocol version of the session opening it (its only part that
	// varies), which every session that would open it so backs off from.
	rkey := wait + "\x00" + hello.version
	if err := u.refusedClient(rkey, time.Now()); err != nil {
		u.mu.Unlock()
		return nil, err
	}
	handed := false // a reclaimed session's place is this one's
	if u.open >= u.cfg.SessionLimit() {
		u.mu.Unlock()
		// At the limit, the idlest upstream session of an agent holding
		// more than this one gives way (reclaim): one agent's opened and
		// unused sessions cannot keep the others out. Its place is handed
		// to this session, not given back for anyone to take.
		if handed = u.reclaim(s); !handed {
			return nil, ErrUpstreamSessions
		}
		u.mu.Lock()
		// Meanwhile another request may have opened (or begun to open)
		// what this one would: the place goes back, and that is used.
		l := u.liveShared(key)
		refused := u.refusedClient(rkey, time.Now())
		if pl, stop := u.opening[wait], u.stop; pl != nil || l != nil || stop || refused != nil {
			u.open--
			if l != nil {
				l.attach(s)
			}
			u.mu.Unlock()
			u.p.opts.Metrics.UpstreamSessions(u.Name, -1)
			switch {
			case l != nil:
				return s.adopt(u, l), nil
			case stop:
				return nil, ErrUpstreamDown
			case pl != nil:
				return u.awaitOpening(ctx, pl, s, key)
			}
			return nil, refused
		}
	}
	pl := &pendingLink{done: make(chan struct{})}
	u.opening[wait] = pl
	if !handed {
		u.open++
		u.p.opts.Metrics.UpstreamSessions(u.Name, 1)
	}
	u.mu.Unlock()

	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), initTimeout)
	if iso := u.isolation(); iso == config.IsolationUser || iso == config.IsolationSession {
		cctx = withLinkUser(cctx, userOf(s.principal.Load()))
	}
	pl.l, pl.err = u.connect(cctx, hello, key)
	cancel()
	if pl.err == nil && key == "" && s.logLevel.Load() != 0 {
		// A new upstream session of the agent session's own (its first,
		// or one after the last ended) logs at the level the agent set:
		// asked on the side, so that a server slow to answer holds no
		// call back.
		go pl.l.setLevel(context.WithoutCancel(ctx), s)
	}
	refused := errors.Is(pl.err, errClientRefused)
	u.mu.Lock()
	delete(u.opening, wait)
	if pl.err != nil {
		u.open--
	} else if key != "" {
		u.shared[key] = pl.l
	}
	u.noteRefusal(rkey, pl.err, refused, time.Now())
	u.mu.Unlock()
	if pl.err == nil {
		go u.releaseWhenDead(pl.l)
	}
	close(pl.done)
	if pl.err != nil {
		u.p.opts.Metrics.UpstreamSessions(u.Name, -1)
		if !refused && errors.Is(pl.err, ErrUpstreamDown) && !errors.Is(pl.err, transport.ErrAuthorization) {
			// Down, not a matter of one grant's authorization or of one
			// client the server refused (that client backs off alone: a
			// refused client cannot make the gateway start a server
			// process, or open a connection, per request).
			u.downUntil.Store(time.Now().Add(minBackoff).UnixNano())
		}
		return nil, pl.err
	}
	return u.awaitOpening(ctx, pl, s, key)
}

// liveShared returns the open shared link of key, if any (u.mu held;
// none once u stops).
func (u *Upstream) liveShared(key string) *link {
	if key == "" || u.stop {
		return nil
	}
	if l := u.shared[key]; l != nil && l.alive() {
		return l
	}
	return nil
}

func (u *Upstream) awaitOpening(ctx context.Context, pl *pendingLink, s *Session, key string) (*link, error) {
	select {
	case <-pl.done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if pl.err != nil {
		return nil, pl.err
	}
	pl.l.attach(s)
	return s.adopt(u, pl.l), nil
}

// adopt records l as s's link to u (closing a dead one it replaces).
func (s *Session) adopt(u *Upstream, l *link) *link {
	s.mu.Lock()
	old := s.links[u]
	closed := s.closed
	if !closed {
		s.links[u] = l
	}
	s.mu.Unlock()
	if old != nil && old != l {
		u.release(old, s)
	}
	if closed {
		u.release(l, s)
	}
	return l
}

// isolationKey is the key of the shared link s uses ("" for a link of its
// own).
func (u *Upstream) isolationKey(s *Session) string {
	pr := s.principal.Load()
	switch u.isolation() {
	case config.IsolationAgent:
		return "a:" + s.agent
	case config.IsolationUser:
		return "u:" + s.agent + "\x00" + userOf(pr).Key
	case config.IsolationShared:
		return sharedKey
	}
	return ""
}

// sharedKey is the key of an upstream's one link all agents share
// (isolation shared).
const sharedKey = "*"

// acrossAgents reports whether l may be shared by several agents' sessions
// (then what it routes is bounded per agent too).
func (l *link) acrossAgents() bool { return l.key == sharedKey }

// release detaches s from l and closes l when nobody uses it any more.
func (u *Upstream) release(l *link, s *Session) {
	if l.detach(s) > 0 {
		return
	}
	u.mu.Lock()
	if l.key != "" && u.shared[l.key] == l {
		delete(u.shared, l.key)
	}
	u.mu.Unlock()
	u.closeLink(l)
}

// releaseWhenDead releases l from every session holding it once its
// connection ends (the server exited, was killed, or stopped reading):
// a dead upstream session stops counting against max_sessions at once, not
// at the idle sweep, and the sessions' next requests open new ones.
func (u *Upstream) releaseWhenDead(l *link) {
	<-l.conn.Done()
	u.drop(l)
}

// drop releases l from every session holding it and closes it.
func (u *Upstream) drop(l *link) {
	for _, s := range l.users() {
		u.forget(s, l)
	}
	// Held by no session (one was still attaching): counted off here.
	u.mu.Lock()
	if l.key != "" && u.shared[l.key] == l {
		delete(u.shared, l.key)
	}
	u.mu.Unlock()
	u.closeLink(l)
}

// refusedClient returns the refusal, while it holds, of the client of
// rkey (u.mu held).
func (u *Upstream) refusedClient(rkey string, now time.Time) error {
	if r, ok := u.refusals[rkey]; ok && now.Before(r.until) {
		return r.err
	}
	return nil
}

// noteRefusal notes how the server answered the client of rkey: a
// refusal backs it off further (minBackoff, doubling up to maxBackoff),
// an opened link forgets its refusals (u.mu held).
func (u *Upstream) noteRefusal(rkey string, err error, refused bool, now time.Time) {
	if !refused {
		if err == nil {
			delete(u.refusals, rkey)
		}
		return
	}
	if u.refusals == nil {
		u.refusals = map[string]clientRefusal{}
	}
	if len(u.refusals) >= maxRefusals {
		for k, r := range u.refusals {
			if !now.Before(r.until) {
				delete(u.refusals, k)
			}
		}
	}
	wait := minBackoff
	if prev := u.refusals[rkey]; prev.wait > 0 {
		wait = min(2*prev.wait, maxBackoff)
	}
	u.refusals[rkey] = clientRefusal{err: err, until: now.Add(wait), wait: wait}
}

// clientRefusal is a server's refusal of a client at initialize: it is
// not asked again before until.
type clientRefusal struct {
	err   error
	until time.Time
	wait  time.Duration
}

// stateHold is how many times session_idle an unused upstream session is
// kept when it holds what its agent sessions still wait for (a
// subscription, a task not over, a URL elicitation).
const stateHold = 4

// maxRefusals bounds the refusals remembered per upstream beyond those
// still holding.
const maxRefusals = 1024

// reclaimAfter is how long an upstream session must have been unused
// before reclaim may close it: a quarter of session_idle, at most 30 s.
func (u *Upstream) reclaimAfter() time.Duration {
	return min(u.cfg.IdleTimeout()/4, 30*time.Second)
}

// reclaim closes, for session s that finds u at its session limit, the
// least recently used of u's upstream sessions that has no call in flight
// and has been unused for reclaimAfter, among those of the agent holding
// the most of them, provided that agent holds more than s's agent will
// once it has one more. The sessions that used it open a new one on their
// next request, as after idle expiry. A session holding what its agent
// sessions still wait for (holdsState) may go too once unused for
// session_idle. It reports whether one was closed:
// its place in max_sessions is then s's, counted still in u.open.
func (u *Upstream) reclaim(s *Session) bool {
	held := map[string]map[*link]bool{} // agent -> its links to u
	for _, o := range u.p.sessions.all() {
		if l := o.linkTo(u); l != nil {
			if held[o.agent] == nil {
				held[o.agent] = map[*link]bool{}
			}
			held[o.agent][l] = true
		}
	}
	most := ""
	for a, ls := range held {
		if most == "" || len(ls) > len(held[most]) || len(ls) == len(held[most]) && a < most {
			most = a
		}
	}
	if most == "" || len(held[most]) <= len(held[s.agent])+1 {
		return false
	}
	var victim *link
	now := time.Now().UnixNano()
	for l := range held[most] {
		used := l.lastUsed.Load()
		unused := time.Duration(now - used)
		if l.active.Load() > 0 || unused < u.reclaimAfter() || unused < u.cfg.IdleTimeout() && l.holdsState(time.Unix(0, now)) {
			continue
		}
		if victim == nil || used < victim.lastUsed.Load() {
			victim = l
		}
	}
	if victim == nil {
		return false
	}
	// Closed here, its place stays counted in u.open for s; the sessions
	// that held it then forget it (closed already, it is not counted off).
	if !victim.close() {
		return false // closed meanwhile (its server ended): its place went back
	}
	u.log.Warn("upstream session reclaimed for another agent at the session limit", "upstream", u.Name, "from_agent", most, "for_agent", s.agent, "limit", u.cfg.SessionLimit())
	u.drop(victim)
	return true
}

func (u *Upstream) closeLink(l *link) {
	if l.close() {
		u.mu.Lock()
		u.open--
		u.mu.Unlock()
		u.p.opts.Metrics.UpstreamSessions(u.Name, -1)
	}
}

// sweep closes links unused for the idle timeout; the sessions that used
// them open new ones on their next request.
func (u *Upstream) sweep(ctx context.Context) {
	idle := u.cfg.IdleTimeout()
	tick := time.NewTicker(min(sweepEvery, max(idle/4, time.Second)))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			held := map[*link]bool{} // holdsState, once per link
			for _, s := range u.p.sessions.all() {
				l := s.linkTo(u)
				if l == nil || l.active.Load() > 0 {
					continue
				}
				unused := now.Sub(time.Unix(0, l.lastUsed.Load()))
				if unused < idle {
					continue
				}
				// A task, subscription or URL elicitation its sessions
				// still wait for keeps it longer, up to stateHold times
				// session_idle unused: an agent cannot keep an upstream
				// session (a process) for good by subscribing.
				if unused < stateHold*idle {
					h, seen := held[l]
					if !seen {
						h = l.holdsState(now)
						held[l] = h
					}
					if h {
						continue
					}
				}
				u.forget(s, l)
			}
		}
	}
}

// forget takes l from session s (its next request opens a new one) and
// releases it.
func (u *Upstream) forget(s *Session, l *link) {
	s.mu.Lock()
	if s.links[u] == l {
		delete(s.links, u)
	}
	s.mu.Unlock()
	u.release(l, s)
}

// fillSpares starts stdio processes ahead of need (dialled, not yet
// initialised: each is initialised with the agent session it serves).
func (u *Upstream) fillSpares(ctx context.Context) {
	want := u.cfg.SpareProcesses()
	for {
		u.mu.Lock()
		n := len(u.spares)
		stop := u.stop
		u.mu.Unlock()
		if stop || n >= want {
			return
		}
		c, err := u.dial(ctx)
		if err != nil {
			u.log.Warn("spare upstream process not started", "err", err)
			return
		}
		u.mu.Lock()
		if u.stop {
			u.mu.Unlock()
			c.Close()
			return
		}
		u.spares = append(u.spares, c)
		u.mu.Unlock()
	}
}

// takeConn returns a spare process or dials a new connection.
func (u *Upstream) takeConn(ctx context.Context) (transport.Conn, error) {
	u.mu.Lock()
	for len(u.spares) > 0 {
		c := u.spares[0]
		u.spares = u.spares[1:]
		select {
		case <-c.Done():
			continue
		default:
		}
		u.mu.Unlock()
		go u.fillSpares(context.Background())
		return c, nil
	}
	u.mu.Unlock()
	return u.dial(ctx)
}

func (u *Upstream) closeAll() {
	u.mu.Lock()
	u.stop = true
	spares := u.spares
	u.spares = nil
	u.mu.Unlock()
	for _, c := range spares {
		c.Close()
	}
}
