package mcpproxy

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/portcullis-dev/portcullis/internal/approval"
	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/identity"
	"github.com/portcullis-dev/portcullis/internal/metrics"
	"github.com/portcullis-dev/portcullis/internal/policy"
	"github.com/portcullis-dev/portcullis/internal/screen"
	"github.com/portcullis-dev/portcullis/internal/telemetry"
)

// Decider is the policy decision point.
type Decider interface {
	Decide(in *policy.Input) policy.Decision
	Visible(ctx context.Context, in *policy.Input) bool
	Version() string
}

// Recorder writes audit events durably.
type Recorder interface {
	// Record returns once e is durable.
	Record(ctx context.Context, e *audit.Event) error
	// Submit queues e without waiting.
	Submit(e *audit.Event) error
}

// PrincipalFunc returns the authenticated principal of a request, or an error
// if there is none. The proxy denies every request without one.
type PrincipalFunc func(ctx context.Context, req mcp.Request) (*identity.Principal, error)

// Options configure a Proxy. Decider, Recorder, Principal and Log are required.
type Options struct {
	Decider   Decider
	Recorder  Recorder
	Principal PrincipalFunc
	Metrics   *metrics.Metrics
	Limits    config.Limits
	// Namespaced prefixes tool and prompt names with "<upstream>__". The
	// aggregating gateway always namespaces; `wrap` of a single server may not.
	Namespaced bool
	Log        *slog.Logger
	Now        func() time.Time
	// Tracer records spans of each request's stages (nil: none).
	Tracer *telemetry.Tracer
	// ToolClasses are operator classifications by qualified tool name; a
	// tool not listed is classified from its annotations.
	ToolClasses map[string][]string
	// Budget rate-limits agents and breaks repetitive call loops (nil: none).
	Budget Budget
	// Approvals holds calls that policy says a human must approve (nil:
	// such calls are denied).
	Approvals Approvals
	// Pinning filters upstreams' tools to approved definitions (nil: all
	// definitions are served).
	Pinning Pinning
	// Labels configure the session data-flow labels of upstreams and tools.
	Labels Labels
	// Spotlight maps an upstream name to the spotlighting mode of its tool
	// results and resources (SpotlightDelimit, SpotlightDatamark).
	Spotlight map[string]string
	// Screener screens arguments and results by the configured rules
	// (nil: no content screening).
	Screener *screen.Screener
}

// Pinning is tool-definition pinning.
type Pinning interface {
	Admit(ctx context.Context, upstream string, session int64, tools []*mcp.Tool) ([]*mcp.Tool, error)
}

// Approvals is the human-approval queue.
type Approvals interface {
	NewRequest(r *approval.Request) error
	Hold(ctx context.Context, r *approval.Request) (*approval.Request, error)
	SessionGrant(ctx context.Context, agent, task, sessionID, tool string) (*approval.Request, bool)
}

// Budget admits or refuses a call before policy.
type Budget interface {
	Admit(agent, tool, argsKey string) (reason string, tripped bool)
}

// Proxy is the enforcement point: an MCP server facing agents whose every
// request is authenticated, decided, audited and then relayed to the
// upstream that serves it.
type Proxy struct {
	opts      Options
	server    *mcp.Server
	catalog   *Catalog
	upstreams []*Upstream

	progressSeq atomic.Uint64
	progress    sync.Map // upstream progress token (string) -> progressRoute

	mu       sync.Mutex
	sessions map[*mcp.ServerSession]*sessionState

	taskMu    sync.Mutex
	taskCalls map[string]int // task token ID -> calls made or delegated through this gateway
}

// maxTrackedTasks bounds the task budget table.
const maxTrackedTasks = 100_000

// taskCall counts a call against the principal's task token budget. It
// returns the calls left after this one, and false if the budget was spent.
func (p *Proxy) taskCall(pr *identity.Principal) (int64, bool) {
	left, ok := p.Reserve(pr.CredentialID, pr.TaskBudget, 1)
	return int64(left), ok
}

// Reserve takes n calls from a task token's budget (a call, or a budget
// handed to a delegate, so that a task tree never spends more than its
// root was given). It returns what is left after, and false if n calls are
// not left. Budgets are counted per gateway process (a task spread over
// several gateways gets each one's budget; a shared store comes with
// scale-out).
func (p *Proxy) Reserve(tokenID string, budget, n int) (int, bool) {
	p.taskMu.Lock()
	defer p.taskMu.Unlock()
	used, seen := p.taskCalls[tokenID]
	if !seen && len(p.taskCalls) >= maxTrackedTasks {
		return 0, false // fail closed rather than forget budgets
	}
	if used+n > budget {
		return budget - used, false
	}
	p.taskCalls[tokenID] = used + n
	return budget - used - n, true
}

// Left is what a task token has left of its budget.
func (p *Proxy) Left(tokenID string, budget int) int {
	p.taskMu.Lock()
	defer p.taskMu.Unlock()
	return budget - p.taskCalls[tokenID]
}

type progressRoute struct {
	session *mcp.ServerSession
	token   any
	// ctx is the agent request's context: notifications sent with it travel
	// on that request's response stream, ahead of the response.
	ctx context.Context
}

type sessionState struct {
	principal *identity.Principal
	calls     atomic.Int32
	labels    sessionLabels
	origins   origins
	token     sessionToken
}

// New builds a Proxy with no upstreams; add them with AddUpstream.
func New(opts Options) *Proxy {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	p := &Proxy{opts: opts, sessions: map[*mcp.ServerSession]*sessionState{}, taskCalls: map[string]int{}}
	p.server = mcp.NewServer(&mcp.Implementation{Name: "portcullis", Version: Version}, &mcp.ServerOptions{
		Logger:   opts.Log,
		PageSize: MaxListItems,
		Capabilities: &mcp.ServerCapabilities{
			Tools:     &mcp.ToolCapabilities{ListChanged: true},
			Prompts:   &mcp.PromptCapabilities{ListChanged: true},
			Resources: &mcp.ResourceCapabilities{ListChanged: true, Subscribe: true},
		},
		SubscribeHandler:   p.subscribeUpstream,
		UnsubscribeHandler: func(context.Context, *mcp.UnsubscribeRequest) error { return nil },
		CompletionHandler:  p.complete,
		KeepAlive:          0,
	})
	var admit func(string, int64, []*mcp.Tool) ([]*mcp.Tool, error)
	if opts.Pinning != nil {
		admit = func(upstream string, session int64, tools []*mcp.Tool) ([]*mcp.Tool, error) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			return opts.Pinning.Admit(ctx, upstream, session, tools)
		}
	}
	p.catalog = newCatalog(p.server, opts.Namespaced, catalogHandlers{
		admit:    admit,
		tool:     p.toolHandler,
		prompt:   p.promptHandler,
		resource: p.resourceHandler,
		problem:  p.reportProblem,
	})
	p.server.AddReceivingMiddleware(p.enforce)
	return p
}

// Server is the agent-facing MCP server, for transports to serve.
func (p *Proxy) Server() *mcp.Server { return p.server }

// AddUpstream registers an upstream served by dial. Call before Run.
func (p *Proxy) AddUpstream(cfg config.Upstream, dial Dialer) *Upstream {
	timeout := p.opts.Limits.CallTimeout.D()
	if cfg.CallTimeout > 0 {
		timeout = cfg.CallTimeout.D()
	}
	maxc := p.opts.Limits.MaxCallsPerUpstream
	if cfg.MaxConcurrentCalls > 0 {
		maxc = cfg.MaxConcurrentCalls
	}
	u := NewUpstream(cfg.Name, dial, timeout, maxc, Hooks{
		Published:       p.catalog.publish,
		Event:           p.upstreamEvent,
		Progress:        p.relayProgress,
		ResourceUpdated: p.relayResourceUpdated,
		ServerRequest:   p.serverRequest,
	}, p.opts.Log)
	u.ProtocolVersion = cfg.ProtocolVersion
	p.upstreams = append(p.upstreams, u)
	return u
}

// RefreshAll re-fetches and re-publishes every upstream's lists (after an
// operator approved or rejected a tool definition).
func (p *Proxy) RefreshAll() {
	for _, u := range p.upstreams {
		u.refreshAsync()
	}
}

// Upstreams returns the registered upstreams.
func (p *Proxy) Upstreams() []*Upstream { return p.upstreams }

// Run supervises all upstreams until ctx ends.
func (p *Proxy) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, u := range p.upstreams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			u.Run(ctx)
		}()
	}
	wg.Wait()
	return nil
}

// WaitReady blocks until every upstream connected once or ctx ends.
func (p *Proxy) WaitReady(ctx context.Context) error {
	for _, u := range p.upstreams {
		select {
		case <-u.Ready():
		case <-ctx.Done():
			return fmt.Errorf("upstream %s not ready: %w", u.Name, ctx.Err())
		}
	}
	return nil
}

// InFlight is the number of agent calls currently being served.
func (p *Proxy) InFlight() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, s := range p.sessions {
		n += int(s.calls.Load())
	}
	return n
}

// session returns the state of ss, creating it for a new session and
// binding it to its first principal. A session whose principal changes
// agent is refused (a stolen session ID is useless with another credential).
func (p *Proxy) session(ss *mcp.ServerSession, pr *identity.Principal) (*sessionState, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if st, ok := p.sessions[ss]; ok {
		if st.principal.Agent != pr.Agent {
			return nil, errSessionHijack
		}
		st.principal = pr // a refreshed credential for the same agent
		return st, nil
	}
	if len(p.sessions) >= p.opts.Limits.MaxSessions {
		return nil, errTooManySessions
	}
	st := &sessionState{principal: pr}
	if pr.TaskPurpose != "" {
		// What the task's starter asked for is trusted: an address or
		// host it names is the user's, whoever repeats it later.
		st.origins.observe([]string{pr.TaskPurpose}, false)
	}
	p.sessions[ss] = st
	p.opts.Metrics.Sessions(1)
	go func() {
		ss.Wait()
		p.mu.Lock()
		delete(p.sessions, ss)
		p.mu.Unlock()
		p.opts.Metrics.Sessions(-1)
	}()
	return st, nil
}

func (p *Proxy) sessionPrincipal(ss *mcp.ServerSession) *identity.Principal {
	p.mu.Lock()
	defer p.mu.Unlock()
	if st, ok := p.sessions[ss]; ok {
		return st.principal
	}
	return nil
}

var (
	errSessionHijack   = errors.New("session belongs to another agent")
	errTooManySessions = errors.New("too many sessions")
)

var reqIDEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// newRequestID returns a 96-bit random request ID.
func newRequestID() string {
	var b [12]byte
	rand.Read(b[:])
	return reqIDEncoding.EncodeToString(b[:])
}

func (p *Proxy) upstreamEvent(u *Upstream, outcome, detail string) {
	p.opts.Metrics.UpstreamUp(u.Name, outcome == "started")
	if outcome == "restarting" {
		p.opts.Metrics.UpstreamRestart(u.Name)
	}
	e := audit.NewEvent(audit.TypeUpstream, p.opts.Now())
	e.Outcome, e.Upstream, e.Code, e.Detail = audit.OutcomeInfo, u.Name, outcome, detail
	p.recordBackground(e)
}

func (p *Proxy) reportProblem(pr Problem) {
	p.opts.Log.Warn("upstream offering refused", "upstreams", pr.Upstreams, "kind", pr.Kind, "name", pr.Name, "detail", pr.Detail)
	e := audit.NewEvent(audit.TypeUpstream, p.opts.Now())
	e.Outcome, e.Code, e.Target, e.Detail = audit.OutcomeError, "offering_refused", pr.Kind+":"+pr.Name, pr.Detail
	if len(pr.Upstreams) > 0 {
		e.Upstream = pr.Upstreams[0]
	}
	p.recordBackground(e)
}

// recordBackground queues an event that does not gate an agent's request.
// A failure is logged loudly and counted: events are never dropped silently.
func (p *Proxy) recordBackground(e *audit.Event) {
	if err := p.opts.Recorder.Submit(e); err != nil && !errors.Is(err, audit.ErrClosed) {
		p.opts.Metrics.AuditWrite(1, err)
		p.opts.Log.Error("audit event lost", "type", e.Type, "code", e.Code, "err", err)
	}
}
