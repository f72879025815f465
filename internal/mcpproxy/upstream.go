//lint:file-ignore SA1019 sampling, elicitation, roots and logging are deprecated as of MCP 2026-07-28, but older peers still use them and the gateway must keep deciding on them.

package mcpproxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Errors a call to an upstream can return. The gateway maps each to a clean
// error for the agent.
var (
	ErrUpstreamDown = errors.New("upstream unavailable")
	ErrUpstreamBusy = errors.New("upstream at its concurrency limit")
)

// Dialer opens a transport to an upstream. It is called on every (re)start.
type Dialer func(ctx context.Context) (mcp.Transport, error)

// Backoff bounds for restarting an upstream.
const (
	minBackoff    = 250 * time.Millisecond
	maxBackoff    = 30 * time.Second
	stableAfter   = 30 * time.Second
	probeTimeout  = 5 * time.Second
	listTimeout   = 30 * time.Second
	keepAliveTick = 30 * time.Second
)

// Lists is what an upstream offers, as last fetched.
type Lists struct {
	Tools     []*mcp.Tool
	Prompts   []*mcp.Prompt
	Resources []*mcp.Resource
	Templates []*mcp.ResourceTemplate
}

// Hooks are how an Upstream reports to the rest of the gateway. The proxy
// sets them; every field must be non-nil.
type Hooks struct {
	// Published is called with fresh lists after (re)connecting and on every
	// list_changed notification.
	Published func(u *Upstream, l Lists)
	// Event reports lifecycle changes (started, exited, restarting).
	Event func(u *Upstream, outcome, detail string)
	// Progress relays a progress notification from the upstream.
	Progress func(ctx context.Context, p *mcp.ProgressNotificationParams)
	// ResourceUpdated relays a resource update notification.
	ResourceUpdated func(ctx context.Context, p *mcp.ResourceUpdatedNotificationParams)
	// ServerRequest decides and relays a request the upstream sends towards
	// an agent (sampling, elicitation, roots). It returns the result or an
	// error that is sent back to the upstream.
	ServerRequest func(ctx context.Context, u *Upstream, method string, req mcp.Request) (mcp.Result, error)
}

// Upstream is one supervised MCP server behind the gateway.
type Upstream struct {
	Name    string
	Timeout time.Duration
	// ProtocolVersion, if set, is the protocol version offered at connect.
	ProtocolVersion string

	dial  Dialer
	hooks Hooks
	log   *slog.Logger
	sem   chan struct{}

	sess     atomic.Pointer[mcp.ClientSession]
	restarts atomic.Int64
	ready    chan struct{} // closed after the first successful connect
	once     sync.Once

	mu       sync.Mutex
	inflight map[*callRef]struct{}
}

// callRef identifies one in-flight call so that a server-initiated request
// can be routed to the agent session that caused it.
type callRef struct{ session *mcp.ServerSession }

// NewUpstream returns an Upstream; Run supervises it.
func NewUpstream(name string, dial Dialer, timeout time.Duration, maxConcurrent int, hooks Hooks, log *slog.Logger) *Upstream {
	return &Upstream{
		Name: name, Timeout: timeout, dial: dial, hooks: hooks,
		log:      log.With("upstream", name),
		sem:      make(chan struct{}, maxConcurrent),
		ready:    make(chan struct{}),
		inflight: map[*callRef]struct{}{},
	}
}

// Session returns the live session or ErrUpstreamDown.
func (u *Upstream) Session() (*mcp.ClientSession, error) {
	if s := u.sess.Load(); s != nil {
		return s, nil
	}
	return nil, ErrUpstreamDown
}

// Healthy reports whether the upstream has a live session.
func (u *Upstream) Healthy() bool { return u.sess.Load() != nil }

// Restarts is how many times the upstream was restarted after exiting.
func (u *Upstream) Restarts() int64 { return u.restarts.Load() }

// Ready is closed once the upstream first connected.
func (u *Upstream) Ready() <-chan struct{} { return u.ready }

// Run connects, publishes the upstream's lists and restarts it with
// exponential backoff whenever it exits, until ctx ends.
func (u *Upstream) Run(ctx context.Context) error {
	backoff := minBackoff
	for ctx.Err() == nil {
		started := time.Now()
		err := u.runOnce(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(started) > stableAfter {
			backoff = minBackoff
		}
		u.restarts.Add(1)
		u.log.Warn("upstream exited; restarting", "err", err, "backoff", backoff)
		u.hooks.Event(u, "restarting", fmt.Sprintf("exited: %v; restarting in %s", err, backoff))
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return nil
		}
		backoff = min(backoff*2, maxBackoff)
	}
	return nil
}

func (u *Upstream) runOnce(ctx context.Context) error {
	t, err := u.dial(ctx)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	client := mcp.NewClient(&mcp.Implementation{Name: "portcullis", Version: Version}, u.clientOptions())
	client.AddReceivingMiddleware(u.serverRequestMiddleware)
	cctx, cancel := context.WithTimeout(ctx, listTimeout)
	sess, err := client.Connect(cctx, t, &mcp.ClientSessionOptions{ProtocolVersion: u.ProtocolVersion})
	cancel()
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer sess.Close()
	if err := u.refresh(ctx, sess); err != nil {
		return err
	}
	u.sess.Store(sess)
	u.once.Do(func() { close(u.ready) })
	u.hooks.Event(u, "started", "")
	u.log.Info("upstream connected", "server", serverName(sess))

	done := make(chan error, 1)
	go func() { done <- sess.Wait() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	u.sess.Store(nil)
	return fmt.Errorf("session ended: %w", err)
}

func serverName(s *mcp.ClientSession) string {
	if r := s.InitializeResult(); r != nil && r.ServerInfo != nil {
		return r.ServerInfo.Name + " " + r.ServerInfo.Version
	}
	return ""
}

func (u *Upstream) clientOptions() *mcp.ClientOptions {
	return &mcp.ClientOptions{
		Logger: u.log,
		// Sampling and elicitation are advertised so that an upstream can ask;
		// every such request is decided by policy in serverRequestMiddleware.
		// Roots are not advertised: they would let an upstream learn (and, in
		// some servers, widen to) the agent's filesystem roots.
		Capabilities: &mcp.ClientCapabilities{
			Sampling:    &mcp.SamplingCapabilities{},
			Elicitation: &mcp.ElicitationCapabilities{},
		},
		ToolListChangedHandler:     func(ctx context.Context, _ *mcp.ToolListChangedRequest) { u.refreshAsync() },
		PromptListChangedHandler:   func(ctx context.Context, _ *mcp.PromptListChangedRequest) { u.refreshAsync() },
		ResourceListChangedHandler: func(ctx context.Context, _ *mcp.ResourceListChangedRequest) { u.refreshAsync() },
		ResourceUpdatedHandler: func(ctx context.Context, r *mcp.ResourceUpdatedNotificationRequest) {
			u.hooks.ResourceUpdated(ctx, r.Params)
		},
		ProgressNotificationHandler: func(ctx context.Context, r *mcp.ProgressNotificationClientRequest) {
			u.hooks.Progress(ctx, r.Params)
		},
		// Logging notifications from upstreams are not relayed to agents.
		LoggingMessageHandler: func(context.Context, *mcp.LoggingMessageRequest) {},
		KeepAlive:             keepAliveTick,
		// Multi round-trip requests would let an upstream interleave requests
		// to the agent outside policy; the gateway decides those itself.
		MultiRoundTrip: &mcp.MultiRoundTripOptions{Disabled: true},
	}
}

// serverRequestMiddleware intercepts requests the upstream sends to us (the
// client side) and hands the ones aimed at agents to policy.
func (u *Upstream) serverRequestMiddleware(next mcp.MethodHandler) mcp.MethodHandler {
	return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
		switch method {
		case "sampling/createMessage", "elicitation/create", "roots/list":
			return u.hooks.ServerRequest(ctx, u, method, req)
		}
		return next(ctx, method, req)
	}
}

func (u *Upstream) refreshAsync() {
	s := u.sess.Load()
	if s == nil {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), listTimeout)
		defer cancel()
		if err := u.refresh(ctx, s); err != nil {
			u.log.Warn("refresh lists after list_changed", "err", err)
		}
	}()
}

// refresh fetches every list the upstream's capabilities announce.
func (u *Upstream) refresh(ctx context.Context, s *mcp.ClientSession) error {
	ctx, cancel := context.WithTimeout(ctx, listTimeout)
	defer cancel()
	var l Lists
	caps := &mcp.ServerCapabilities{}
	if r := s.InitializeResult(); r != nil && r.Capabilities != nil {
		caps = r.Capabilities
	}
	var err error
	if caps.Tools != nil {
		if l.Tools, err = collect(s.Tools(ctx, nil)); err != nil {
			return fmt.Errorf("list tools: %w", err)
		}
	}
	if caps.Prompts != nil {
		if l.Prompts, err = collect(s.Prompts(ctx, nil)); err != nil {
			return fmt.Errorf("list prompts: %w", err)
		}
	}
	if caps.Resources != nil {
		if l.Resources, err = collect(s.Resources(ctx, nil)); err != nil {
			return fmt.Errorf("list resources: %w", err)
		}
		if l.Templates, err = collect(s.ResourceTemplates(ctx, nil)); err != nil {
			return fmt.Errorf("list resource templates: %w", err)
		}
	}
	u.hooks.Published(u, l)
	return nil
}

// collect drains a paginated list iterator, bounded by MaxListItems.
func collect[T any](seq func(func(T, error) bool)) ([]T, error) {
	var out []T
	var err error
	seq(func(v T, e error) bool {
		if e != nil {
			err = e
			return false
		}
		if len(out) >= MaxListItems {
			err = fmt.Errorf("more than %d items", MaxListItems)
			return false
		}
		out = append(out, v)
		return true
	})
	return out, err
}

// acquire takes a concurrency slot without waiting: overload is an error, not
// a queue.
func (u *Upstream) acquire(ss *mcp.ServerSession) (*callRef, error) {
	select {
	case u.sem <- struct{}{}:
	default:
		return nil, ErrUpstreamBusy
	}
	ref := &callRef{session: ss}
	u.mu.Lock()
	u.inflight[ref] = struct{}{}
	u.mu.Unlock()
	return ref, nil
}

func (u *Upstream) release(ref *callRef) {
	u.mu.Lock()
	delete(u.inflight, ref)
	u.mu.Unlock()
	<-u.sem
}

// soleCaller returns the agent session with calls in flight on this upstream
// when there is exactly one; a server-initiated request can only be routed
// unambiguously then.
func (u *Upstream) soleCaller() *mcp.ServerSession {
	u.mu.Lock()
	defer u.mu.Unlock()
	var found *mcp.ServerSession
	for ref := range u.inflight {
		if found != nil && ref.session != found {
			return nil
		}
		found = ref.session
	}
	return found
}

// probe pings the upstream after a timeout and closes a session that does not
// answer, so the supervisor restarts a hung server.
func (u *Upstream) probe(s *mcp.ClientSession) {
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	if err := s.Ping(ctx, nil); err != nil {
		u.log.Warn("upstream unresponsive after a timed-out call; restarting", "err", err)
		s.Close()
	}
}
