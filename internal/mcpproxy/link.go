package mcpproxy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portcullis-dev/portcullis/internal/policy"
	"github.com/portcullis-dev/portcullis/internal/transport"
	"github.com/portcullis-dev/portcullis/internal/wire"
)

// Protocol versions the gateway speaks, newest first. A session with an
// upstream is offered the agent's own version; the gateway answers the
// agent with the oldest its upstreams agreed.
var protocolVersions = []string{"2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"}

// LatestProtocol is the newest protocol version the gateway speaks.
const LatestProtocol = "2025-11-25"

func supportedVersion(v string) bool {
	for _, s := range protocolVersions {
		if s == v {
			return true
		}
	}
	return false
}

// List limits.
const (
	// maxListPages bounds the pages fetched for one list.
	maxListPages = 100
)

// link is one session with an upstream, used by one agent session (or,
// when the upstream is configured to share, by several).
type link struct {
	up     *Upstream
	conn   transport.Conn
	key    string // isolation key ("" for a session's own link)
	number int64  // identifies the session to pinning (trust on first use)
	probe  bool

	version      string
	caps         []byte // the server's capabilities object
	serverInfo   []byte
	instructions []byte // raw JSON string, or nil
	capTools     bool
	capPrompts   bool
	capResources bool
	capSubscribe bool
	capLogging   bool
	capComplete  bool
	capTaskList  bool

	nextID   atomic.Int64
	lastUsed atomic.Int64
	active   atomic.Int32
	changed  chan struct{} // a list changed (the probe re-lists)

	// levelSem (one slot) serialises setLevel; level is the log level the
	// server last accepted (logRank).
	levelSem chan struct{}
	level    int32

	mu       sync.Mutex
	sessions map[*Session]struct{}
	cached   *linkLists
	calls    map[string]*call    // in flight, by the upstream request id
	tokens   map[string]*call    // rewritten progress tokens
	tasks    map[string]taskInfo // tasks created through this link
	// subs are the sessions subscribed to each resource URI, elicits the
	// session each URL elicitation was relayed to: the notifications about
	// them (resources/updated, elicitation/complete) go to those sessions
	// alone, never to every session of a shared link.
	subs map[string]map[*Session]bool
	// subPending are subscriptions relayed and not yet answered;
	// subCount counts each session's subscriptions and those pending.
	subPending map[string]map[*Session]int
	subCount   map[*Session]int
	// subTurns serialise the subscriptions and unsubscriptions of one URI
	// on a shared link (present while one holds the turn).
	subTurns map[string]*subTurn
	// agentTasks and agentSubs are taskCount plus taskPending, and
	// subCount, summed per agent (the bounds of a link all agents share).
	agentTasks map[string]int
	agentSubs  map[string]int
	// taskCount counts each session's entries in tasks, taskPending its
	// reservations for tasks its calls in flight may create.
	taskCount   map[*Session]int
	taskPending map[*Session]int
	elicits     map[string]*Session
	// first is the first agent session to hold the link; mixed: another
	// has held it since.
	first    string // its id
	mixed    bool
	closed   bool
	fetching map[string]*fetchOnce
}

type fetchOnce struct {
	done  chan struct{}
	items [][]byte
	err   error
}

// clientHello is what the gateway tells an upstream at initialize.
type clientHello struct {
	version string
	caps    []byte
	info    []byte
}

// probeClient offers every client capability: the probe is never asked to
// use them (its server requests are refused) but the server then shows
// every tool it offers any client.
func probeClient() clientHello {
	return clientHello{
		version: LatestProtocol,
		caps:    []byte(`{"sampling":{},"elicitation":{"form":{},"url":{}},"roots":{"listChanged":true}}`),
		info:    gatewayInfo(),
	}
}

func gatewayInfo() []byte {
	return []byte(`{"name":"portcullis","version":` + string(wire.Quote(Version)) + `}`)
}

// clientFor is what a link for s (with isolation key key) offers: for a
// session of its own, the agent's version, identity and the capabilities
// policy could ever let the upstream use; for a shared link, the gateway's
// identity and no client capabilities (requests from a server to a client
// could not be routed to one agent).
func (u *Upstream) clientFor(s *Session, key string) clientHello {
	s.initMu.Lock()
	version, caps, info := s.version, s.clientCaps, s.clientInfo
	s.initMu.Unlock()
	if version == "" {
		version = LatestProtocol
	}
	if v := u.cfg.ProtocolVersion; v != "" {
		version = v // pinned by configuration
	}
	if key != "" {
		return clientHello{version: version, caps: []byte(`{}`), info: gatewayInfo()}
	}
	if info == nil {
		info = gatewayInfo()
	}
	return clientHello{version: version, caps: u.offeredCaps(caps), info: info}
}

// offeredCaps removes from an agent's capabilities the ones no policy
// could let this upstream use (sampling, elicitation, roots): the server
// then does not offer what would always be refused.
func (u *Upstream) offeredCaps(caps []byte) []byte {
	if len(caps) == 0 {
		return []byte(`{}`)
	}
	out := []byte{'{'}
	wire.Members(caps, wire.Span{Start: 0, End: len(caps)}, func(k, v wire.Span) bool {
		name, _ := wire.String(caps, k)
		if action := map[string]string{"sampling": policy.ActionSampling, "elicitation": policy.ActionElicitation, "roots": policy.ActionListRoots}[name]; action != "" &&
			!u.p.opts.Decider.Visible(context.Background(), &policy.Input{Upstream: u.Name, Action: action, Target: policy.Target{Kind: policy.KindAgent, ID: "*"}}) {
			return true
		}
		if len(out) > 1 {
			out = append(out, ',')
		}
		out = append(append(append(out, k.In(caps)...), ':'), v.In(caps)...)
		return true
	})
	return append(out, '}')
}

// connect opens a connection and initialises an MCP session over it.
// probeKey is the key of the probe's link: set when the link is made,
// before it listens (its notifications read it).
const probeKey = "probe"

func (u *Upstream) connect(ctx context.Context, hello clientHello, key string) (*link, error) {
	conn, err := u.takeConn(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUpstreamDown, err)
	}
	l := &link{
		up: u, conn: conn, key: key, probe: key == probeKey, number: u.linkSeq.Add(1), changed: make(chan struct{}, 1), levelSem: make(chan struct{}, 1),
		sessions: map[*Session]struct{}{}, calls: map[string]*call{}, tokens: map[string]*call{},
		tasks: map[string]taskInfo{}, fetching: map[string]*fetchOnce{},
		subs: map[string]map[*Session]bool{}, subPending: map[string]map[*Session]int{}, subCount: map[*Session]int{}, taskCount: map[*Session]int{}, elicits: map[string]*Session{},
	}
	l.lastUsed.Store(time.Now().UnixNano())
	params := []byte(`{"protocolVersion":`)
	params = wire.AppendString(params, hello.version)
	params = append(params, `,"capabilities":`...)
	params = append(params, hello.caps...)
	params = append(params, `,"clientInfo":`...)
	params = append(params, hello.info...)
	params = append(params, '}')
	res, err := l.request(ctx, "initialize", params, nil)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("%w: initialize: %w", ErrUpstreamDown, err)
	}
	if res.Kind == wire.ErrorReply {
		// The server is up and refused this client (its name, version or
		// capabilities): not a reason to hold every other session back.
		conn.Close()
		return nil, fmt.Errorf("initialize: %w: %w", errClientRefused, l.initialized(res))
	}
	if err := l.initialized(res); err != nil {
		conn.Close()
		return nil, fmt.Errorf("%w: initialize: %w", ErrUpstreamDown, err)
	}
	conn.Negotiated(l.version)
	if err := conn.Send(ctx, wire.NewNotification("notifications/initialized", nil)); err != nil {
		conn.Close()
		return nil, fmt.Errorf("%w: %w", ErrUpstreamDown, err)
	}
	conn.Listen(l.onMessage)
	return l, nil
}

// initialized reads the server's initialize result.
func (l *link) initialized(res *wire.Message) error {
	if res.Kind == wire.ErrorReply {
		msg, _ := wire.Lookup(res.Raw, res.Error, "message")
		text, _ := wire.String(res.Raw, msg)
		return fmt.Errorf("refused: %s", truncate(text, 200))
	}
	b := res.Raw
	v, _ := wire.String(b, res.ResultMember("protocolVersion"))
	if !supportedVersion(v) {
		return fmt.Errorf("protocol version %q is not one the gateway speaks", truncate(v, 40))
	}
	l.version = v
	caps := res.ResultMember("capabilities")
	if !wire.IsObject(b, caps) {
		return errors.New("no capabilities")
	}
	l.caps = caps.In(b)
	has := func(name string) (wire.Span, bool) {
		sp, ok := wire.Lookup(b, caps, name)
		return sp, ok && wire.IsObject(b, sp)
	}
	_, l.capTools = has("tools")
	_, l.capPrompts = has("prompts")
	_, l.capLogging = has("logging")
	_, l.capComplete = has("completions")
	if sp, ok := has("resources"); ok {
		l.capResources = true
		if s, ok := wire.Lookup(b, sp, "subscribe"); ok {
			l.capSubscribe = wire.IsTrue(b, s)
		}
	}
	if sp, ok := has("tasks"); ok {
		_, l.capTaskList = wire.Lookup(b, sp, "list")
	}
	if sp := res.ResultMember("serverInfo"); wire.IsObject(b, sp) {
		l.serverInfo = sp.In(b)
	}
	if sp := res.ResultMember("instructions"); wire.IsString(b, sp) {
		l.instructions = sp.In(b)
	}
	return nil
}

func (l *link) serverName() string {
	if l.serverInfo == nil {
		return ""
	}
	var info struct{ Name, Version string }
	json.Unmarshal(l.serverInfo, &info)
	return truncate(info.Name+" "+info.Version, 100)
}

// newID is the next request id on this link (the gateway numbers every
// request it sends an upstream: agents' ids never reach it).
func (l *link) newID() []byte { return strconv.AppendInt(nil, l.nextID.Add(1), 10) }

// request sends the gateway's own request and returns the result.
func (l *link) request(ctx context.Context, method string, params []byte, related func(*wire.Message)) (*wire.Message, error) {
	msg, err := wire.Parse(wire.NewRequest(l.newID(), method, params), 0)
	if err != nil {
		return nil, err
	}
	if related == nil {
		related = l.onMessage
	}
	return l.conn.RoundTrip(ctx, msg, related)
}

func (l *link) ping(ctx context.Context) error {
	res, err := l.request(ctx, "ping", nil, nil)
	if err == nil && res.Kind == wire.ErrorReply {
		err = errors.New("ping refused")
	}
	return err
}

func (l *link) alive() bool {
	select {
	case <-l.conn.Done():
		return false
	default:
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return !l.closed
}

func (l *link) attach(s *Session) {
	l.mu.Lock()
	if l.first == "" {
		l.first = s.id
	} else if l.first != s.id {
		l.mixed = true
	}
	l.sessions[s] = struct{}{}
	l.mu.Unlock()
}

// soleHolder returns the agent session holding l if it is the only one
// that ever has: what the upstream session sends outside any request is
// then that session's, and nobody's else.
func (l *link) soleHolder() *Session {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.mixed || len(l.sessions) != 1 {
		return nil
	}
	for s := range l.sessions {
		return s
	}
	return nil
}

// detach removes s and returns how many sessions still use the link.
func (l *link) detach(s *Session) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.sessions, s)
	for id, t := range l.tasks {
		if t.s == s {
			delete(l.tasks, id)
		}
	}
	for uri, ss := range l.subs {
		if delete(ss, s); len(ss) == 0 {
			delete(l.subs, uri)
		}
	}
	for uri, ps := range l.subPending {
		if delete(ps, s); len(ps) == 0 {
			delete(l.subPending, uri)
		}
	}
	l.countSubs(s, -l.subCount[s])
	l.countTasks(s, -l.taskCount[s]) // its reservations are settled by their calls
	for id, es := range l.elicits {
		if es == s {
			delete(l.elicits, id)
		}
	}
	return len(l.sessions)
}

// Bounds on what a link remembers for routing notifications: past them a
// subscription or URL elicitation is still relayed, but its notifications
// are not (the agent can read the resource, or see the elicitation's
// outcome, by asking).
const (
	maxSubscriptions           = 4096
	maxSubscriptionsPerSession = 256
	maxSubscriptionsPerAgent   = maxSubscriptions / 4
	maxElicitations            = 1024
)

// holdsState reports whether the gateway routes something for l beyond
// calls that its agent sessions still wait for: a task not yet over (not
// ended, or its result not yet had, and not past its ttl), a task about
// to be created, a subscription, a URL elicitation.
func (l *link) holdsState(now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.taskPending) > 0 || len(l.subs) > 0 || len(l.subPending) > 0 || len(l.elicits) > 0 {
		return true
	}
	for _, t := range l.tasks {
		if !(t.ended && t.fetched) && (t.expires.IsZero() || now.Before(t.expires)) {
			return true
		}
	}
	return false
}

// elicited notes that the URL elicitation id was relayed to s.
func (l *link) elicited(s *Session, id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, attached := l.sessions[s]; attached && len(l.elicits) < maxElicitations {
		l.elicits[id] = s
	}
}

// elicitationDone returns the session URL elicitation id was relayed to
// and forgets it (it completes once).
func (l *link) elicitationDone(id string) *Session {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.elicits[id]
	delete(l.elicits, id)
	if _, ok := l.sessions[s]; !ok {
		return nil
	}
	return s
}

func (l *link) users() []*Session {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]*Session, 0, len(l.sessions))
	for s := range l.sessions {
		out = append(out, s)
	}
	return out
}

// close ends the session with the upstream; it reports whether this call
// closed it.
func (l *link) close() bool {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return false
	}
	l.closed = true
	l.mu.Unlock()
	l.conn.Close()
	return true
}

func (l *link) invalidate() {
	l.mu.Lock()
	l.cached = nil
	l.mu.Unlock()
}

// invalidateKind forgets one kind of list (fetched again on next use).
func (l *link) invalidateKind(kind string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cached == nil {
		return
	}
	next := *l.cached
	next.fetched = map[string]bool{}
	for k, v := range l.cached.fetched {
		next.fetched[k] = v && k != kind
	}
	l.cached = &next
}

// lists returns what the link offers, fetching the kinds its server
// announces that were not fetched yet (tools pass through pinning).
func (l *link) lists(ctx context.Context) (*linkLists, error) {
	l.mu.Lock()
	cur := l.cached
	l.mu.Unlock()
	want := l.kinds()
	if cur != nil {
		missing := false
		for _, k := range want {
			missing = missing || !cur.fetched[k]
		}
		if !missing {
			return cur, nil
		}
	}
	next := &linkLists{fetched: map[string]bool{}}
	if cur != nil {
		*next = *cur
		next.fetched = map[string]bool{}
		for k, v := range cur.fetched {
			next.fetched[k] = v
		}
	}
	var errs []error
	for _, kind := range want {
		if next.fetched[kind] {
			continue
		}
		items, err := l.fetch(ctx, kind)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", listMethod[kind], err))
			continue
		}
		parsed, problems := l.parseItems(kind, items)
		for _, pr := range problems {
			l.up.p.problem(pr)
		}
		switch v := parsed.(type) {
		case []*toolEntry:
			if next.tools, err = l.admit(ctx, v); err != nil {
				errs = append(errs, err)
				continue
			}
		case []*promptEntry:
			next.prompts = v
		case []*resourceEntry:
			next.resources = v
		case []*templateEntry:
			next.templates = v
		}
		next.fetched[kind] = true
	}
	next.digest = next.computeDigest()
	l.mu.Lock()
	if !l.closed {
		l.cached = next
	}
	l.mu.Unlock()
	return next, errors.Join(errs...)
}

// kinds are the lists the server announced.
func (l *link) kinds() []string {
	var k []string
	if l.capTools {
		k = append(k, kindTools)
	}
	if l.capPrompts {
		k = append(k, kindPrompts)
	}
	if l.capResources {
		k = append(k, kindResources, kindTemplates)
	}
	return k
}

// fetch gets every page of one list (concurrent callers share one fetch).
func (l *link) fetch(ctx context.Context, kind string) ([][]byte, error) {
	l.mu.Lock()
	if f := l.fetching[kind]; f != nil {
		l.mu.Unlock()
		select {
		case <-f.done:
			return f.items, f.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	f := &fetchOnce{done: make(chan struct{})}
	l.fetching[kind] = f
	l.mu.Unlock()
	// Shared by every caller that asks meanwhile: not bound to this one's
	// request (its cancellation would fail the others'), bounded by the
	// upstream's call timeout.
	wait := listTimeout
	if t := l.up.timeout; t > 0 && t < wait {
		wait = t
	}
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), wait)
	go func() {
		defer cancel()
		f.items, f.err = l.fetchPages(fctx, kind)
		l.mu.Lock()
		delete(l.fetching, kind)
		l.mu.Unlock()
		close(f.done)
	}()
	select {
	case <-f.done:
		return f.items, f.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (l *link) fetchPages(ctx context.Context, kind string) ([][]byte, error) {
	var items [][]byte
	var cursor []byte
	for page := 0; page < maxListPages; page++ {
		var params []byte
		if cursor != nil {
			params = append(append([]byte(`{"cursor":`), cursor...), '}')
		}
		res, err := l.request(ctx, listMethod[kind], params, nil)
		if err != nil {
			return nil, err
		}
		if res.Kind == wire.ErrorReply {
			return nil, errors.New("refused by the upstream")
		}
		b := res.Raw
		arr := res.ResultMember(kind)
		var bad bool
		wire.Elements(b, arr, func(el wire.Span) bool {
			if !wire.IsObject(b, el) || len(items) >= MaxListItems {
				bad = true
				return false
			}
			items = append(items, el.In(b))
			return true
		})
		if bad {
			return nil, fmt.Errorf("items not objects, or more than %d", MaxListItems)
		}
		next := res.ResultMember("nextCursor")
		if !wire.IsString(b, next) {
			return items, nil
		}
		cursor = next.In(b)
	}
	return nil, fmt.Errorf("more than %d pages", maxListPages)
}

func (k *linkLists) computeDigest() string {
	h := sha256.New()
	for _, t := range k.tools {
		h.Write(t.raw)
	}
	h.Write([]byte{0})
	for _, p := range k.prompts {
		h.Write(p.raw)
	}
	h.Write([]byte{0})
	for _, r := range k.resources {
		h.Write(r.raw)
	}
	h.Write([]byte{0})
	for _, t := range k.templates {
		h.Write(t.raw)
	}
	return hex.EncodeToString(h.Sum(nil)[:12])
}
