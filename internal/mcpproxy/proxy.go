package mcpproxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/portcullis-dev/portcullis/internal/approval"
	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/identity"
	"github.com/portcullis-dev/portcullis/internal/metrics"
	"github.com/portcullis-dev/portcullis/internal/policy"
	"github.com/portcullis-dev/portcullis/internal/reason"
	"github.com/portcullis-dev/portcullis/internal/screen"
	"github.com/portcullis-dev/portcullis/internal/telemetry"
	"github.com/portcullis-dev/portcullis/internal/token"
	"github.com/portcullis-dev/portcullis/internal/transport"
	"github.com/portcullis-dev/portcullis/internal/wire"
)

// Decider is the policy decision point.
type Decider interface {
	Decide(in *policy.Input) policy.Decision
	Visible(ctx context.Context, in *policy.Input) bool
	Version() string
	// ReadsProvenance: the policies read argument provenance, so sessions
	// index what they read.
	ReadsProvenance() bool
}

// Recorder writes audit events (audit.Recorder).
type Recorder interface {
	// Record returns once e is on disk.
	Record(ctx context.Context, e *audit.Event) error
	// Commit returns once e is committed to the log; the receipt tells
	// when it is on disk.
	Commit(ctx context.Context, e *audit.Event) (*audit.Receipt, error)
	// Submit queues e without waiting.
	Submit(e *audit.Event) error
}

var _ Recorder = (*audit.Recorder)(nil)

// PrincipalFunc returns the principal of the agent behind the stdio front,
// checked on every request (the credential may be rotated or revoked).
type PrincipalFunc func(ctx context.Context) (*identity.Principal, error)

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
	Admit(agent, tool, argsKey string) (refused reason.Code, tripped bool)
}

// Options configure a Proxy. Decider, Recorder and Log are required.
type Options struct {
	// TaskBudgets, if set, counts task budgets (the fleet's store);
	// otherwise each gateway counts its own.
	TaskBudgets TaskBudgets
	// FleetRate, if set, caps each agent's calls per minute across a
	// fleet (beside Budget's cap in this gateway).
	FleetRate *FleetRate
	// Sessions, if set, keeps HTTP sessions in the store, so that another
	// gateway sharing it, or this one restarted, takes a session up
	// (session_store.go).
	Sessions SessionStore
	// SharedSessions: other gateways serve the same sessions (a fleet):
	// each request reads its session's labels from Sessions first.
	SharedSessions bool
	Decider        Decider
	Recorder       Recorder
	Metrics        *metrics.Metrics
	Limits         config.Limits
	Log            *slog.Logger
	// Now is the clock of audit events (default time.Now); credentials'
	// expiry is always checked on the real clock.
	Now func() time.Time
	// Assert signs the per-request assertion towards an HTTP upstream
	// whose configuration asks for one (audience: its URL).
	Assert func(audience string, a token.Assertion) (string, error)
	// Tracer records spans of each request's stages (nil: none).
	Tracer *telemetry.Tracer
	// ToolClasses are operator classifications by qualified tool name; a
	// tool not listed is classified from its annotations.
	ToolClasses map[string][]string
	// Dataflow describes tools' argument roles and trusted result fields,
	// by qualified tool name (argument provenance).
	Dataflow map[string]*Dataflow
	// Intents verifies the orchestrator's Portcullis-Intent header (nil:
	// a request carrying one is refused).
	Intents IntentVerifier
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
	// SyncBeforeRelay makes a decision reach the disk before the upstream
	// sees the call (audit.sync before_relay); otherwise it is committed to
	// the log before the relay and, unless SyncBackground, on disk before
	// the agent's answer.
	SyncBeforeRelay bool
	// SyncBackground answers without waiting for the decision to reach the
	// disk (audit.sync background): it is committed before the relay and
	// synced by the recorder within its window. Denials still wait.
	SyncBackground bool
	// AllowedHosts and AllowedOrigins guard the HTTP front against DNS
	// rebinding and cross-site requests (see config.Listen).
	AllowedHosts   []string
	AllowedOrigins []string
	// PublicURL is the configured public origin (config listen.public_url).
	PublicURL string
	// Scopes are the scopes external tokens must carry (config
	// auth.scopes), named in challenges.
	Scopes []string
}

// Proxy is the enforcement point between agents and upstreams.
type Proxy struct {
	opts      Options
	upstreams []*Upstream
	sessions  sessionTable
	contained containment // the response's hold on sessions and agents
	problems  problemLog
	hosts     hostCheck
	timer     stageTimer

	taskMu    sync.Mutex
	taskCalls map[string]int // task token ID -> calls made or delegated through this gateway (without TaskBudgets)
}

// New builds a Proxy with no upstreams; add them with AddUpstream.
func New(opts Options) *Proxy {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	p := &Proxy{opts: opts, taskCalls: map[string]int{}}
	p.sessions.init()
	hosts := opts.AllowedHosts
	if len(hosts) == 0 && opts.PublicURL != "" {
		if u, err := url.Parse(opts.PublicURL); err == nil {
			hosts = append([]string{u.Hostname()}, loopbackNames...)
		}
	}
	p.hosts = newHostCheck(hosts, opts.AllowedOrigins)
	p.timer = newStageTimer(p)
	return p
}

// AddUpstream registers an upstream served through dial. Call before Run.
func (p *Proxy) AddUpstream(cfg config.Upstream, dial transport.Dialer) *Upstream {
	u := newUpstream(p, cfg, dial)
	p.upstreams = append(p.upstreams, u)
	return u
}

// Upstreams returns the registered upstreams.
func (p *Proxy) Upstreams() []*Upstream { return p.upstreams }

// Reprobe asks the named upstream's probe to connect and list again now
// (after it was authorized, say).
func (p *Proxy) Reprobe(name string) {
	for _, u := range p.upstreams {
		if u.Name == name {
			u.reprobe()
		}
	}
}

func (p *Proxy) upstream(name string) *Upstream {
	for _, u := range p.upstreams {
		if u.Name == name {
			return u
		}
	}
	return nil
}

// Run probes and supervises the upstreams and expires idle sessions until
// ctx ends; then it closes every session.
func (p *Proxy) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, u := range p.upstreams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			u.run(ctx)
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		p.sessions.expire(ctx, p)
	}()
	wg.Wait()
	p.sessions.closeAll()
	return nil
}

// WaitReady blocks until every upstream answered its first probe, or ctx
// ends.
func (p *Proxy) WaitReady(ctx context.Context) error {
	for _, u := range p.upstreams {
		select {
		case <-u.ready:
		case <-ctx.Done():
			return fmt.Errorf("upstream %s not ready: %w", u.Name, ctx.Err())
		}
	}
	return nil
}

// Collisions returns the names two upstreams both serve, found by the
// probes (empty when every upstream could be probed and none collide).
func (p *Proxy) Collisions() []Problem {
	return collisions(p.upstreams)
}

// RefreshAll tells every agent session that the tool lists may have
// changed (after an operator approved or rejected a tool definition):
// their next list is fetched afresh.
func (p *Proxy) RefreshAll() {
	for _, s := range p.sessions.all() {
		s.invalidateLists(nil)
		s.notify(listChanged("tools"))
	}
	for _, u := range p.upstreams {
		u.reprobe()
	}
}

// ElicitationComplete tells the agent sessions of the user whose key is
// user (User.Key) that the URL elicitation id (an upstream authorization
// they were asked to open) is complete, so that their clients retry what
// it held up.
func (p *Proxy) ElicitationComplete(user, id string) {
	params := wire.AppendString([]byte(`{"elicitationId":`), id)
	params = append(params, '}')
	msg := wire.NewNotification("notifications/elicitation/complete", params)
	for _, s := range p.sessions.all() {
		if u := userOf(s.principal.Load()); u.Key != "" && u.Key == user {
			s.notify(msg)
		}
	}
}

// InFlight is the number of agent calls currently being served.
func (p *Proxy) InFlight() int {
	n := 0
	for _, s := range p.sessions.all() {
		n += int(s.calls.Load())
	}
	return n
}

// maxTrackedTasks bounds the task budget table.
const maxTrackedTasks = 100_000

// TaskBudgets counts task budgets outside the gateway (the fleet's store):
// a budget of N calls is N across every gateway sharing it.
type TaskBudgets interface {
	ReserveBudget(ctx context.Context, tokenID string, budget, n int) (left int, ok bool, err error)
	BudgetLeft(ctx context.Context, tokenID string, budget int) (int, error)
}

// Reserve takes n calls from a task token's budget (a call, or a budget
// handed to a delegate, so that a task tree never spends more than its
// root was given). It returns what is left after, and false if n calls are
// not left. Budgets are counted in Options.TaskBudgets when set (a fleet
// on one store), else in this process; an error counting is a refusal.
func (p *Proxy) Reserve(ctx context.Context, tokenID string, budget, n int) (int, bool, error) {
	if p.opts.TaskBudgets != nil {
		return p.opts.TaskBudgets.ReserveBudget(ctx, tokenID, budget, n)
	}
	p.taskMu.Lock()
	defer p.taskMu.Unlock()
	used, seen := p.taskCalls[tokenID]
	if !seen && len(p.taskCalls) >= maxTrackedTasks {
		return 0, false, nil // fail closed rather than forget budgets
	}
	if used+n > budget {
		return budget - used, false, nil
	}
	p.taskCalls[tokenID] = used + n
	return budget - used - n, true, nil
}

// Left is what a task token has left of its budget.
func (p *Proxy) Left(ctx context.Context, tokenID string, budget int) (int, error) {
	if p.opts.TaskBudgets != nil {
		return p.opts.TaskBudgets.BudgetLeft(ctx, tokenID, budget)
	}
	p.taskMu.Lock()
	defer p.taskMu.Unlock()
	return budget - p.taskCalls[tokenID], nil
}

// recordBackground queues an event that does not gate an agent's request.
// A failure is logged loudly and counted: events are never dropped silently.
func (p *Proxy) recordBackground(e *audit.Event) {
	if err := p.opts.Recorder.Submit(e); err != nil && !errors.Is(err, audit.ErrClosed) {
		p.opts.Metrics.AuditWrite(1, err)
		p.opts.Log.Error("audit event lost", "type", e.Type, "code", e.Code, "err", err)
	}
}

func (p *Proxy) upstreamEvent(u *Upstream, what reason.Code, detail string) {
	p.opts.Metrics.UpstreamUp(u.Name, what == reason.Started)
	if what == reason.Restarting {
		p.opts.Metrics.UpstreamRestart(u.Name)
	}
	e := audit.New(audit.TypeUpstream, audit.OutcomeInfo, what, p.opts.Now(), audit.Subject{})
	e.Upstream, e.Detail = u.Name, truncate(detail, 500)
	p.recordBackground(e)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
