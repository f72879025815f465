package gateway

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/portcullis-dev/portcullis/internal/admin"
	"github.com/portcullis-dev/portcullis/internal/approval"
	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/authn"
	"github.com/portcullis-dev/portcullis/internal/authserver"
	"github.com/portcullis-dev/portcullis/internal/budget"
	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/console"
	"github.com/portcullis-dev/portcullis/internal/demo"
	"github.com/portcullis-dev/portcullis/internal/detect"
	"github.com/portcullis-dev/portcullis/internal/evidence"
	"github.com/portcullis-dev/portcullis/internal/grant"
	"github.com/portcullis-dev/portcullis/internal/identity"
	"github.com/portcullis-dev/portcullis/internal/mcpproxy"
	"github.com/portcullis-dev/portcullis/internal/memory"
	"github.com/portcullis-dev/portcullis/internal/metrics"
	"github.com/portcullis-dev/portcullis/internal/oauthclient"
	"github.com/portcullis-dev/portcullis/internal/ops"
	"github.com/portcullis-dev/portcullis/internal/outbound"
	"github.com/portcullis-dev/portcullis/internal/policy"
	"github.com/portcullis-dev/portcullis/internal/provenance"
	"github.com/portcullis-dev/portcullis/internal/reason"
	"github.com/portcullis-dev/portcullis/internal/sandbox"
	"github.com/portcullis-dev/portcullis/internal/screen"
	"github.com/portcullis-dev/portcullis/internal/secret"
	"github.com/portcullis-dev/portcullis/internal/store"
	"github.com/portcullis-dev/portcullis/internal/telemetry"
	"github.com/portcullis-dev/portcullis/internal/token"
	"github.com/portcullis-dev/portcullis/internal/toolreg"
	"github.com/portcullis-dev/portcullis/internal/transport"
)

// DemoDir is where the demo upstream of `serve --dev` keeps its files, in
// the data directory (whose layout package ops owns).
const DemoDir = "demo"

// Gateway is a configured daemon, ready to Run.
type Gateway struct {
	cfg           *config.Config
	log           *slog.Logger
	dataDir       string
	store         *store.DB
	approvals     *approval.Queue // the calls and response steps held for a reviewer
	svidMu        sync.Mutex
	svid          *tls.Certificate // the gateway's own SVID towards upstreams (gatewaySVID)
	memory        *memory.Service  // the built-in memory (builtin: memory)
	rolledBack    atomic.Bool      // a rollback held the bundle at the last reload
	console       *console.Server  // the web console on the admin listener
	egressProxies egressProxies    // running sandboxed launches' ways out, by upstream
	recorder      *audit.Recorder
	engine        *policy.Engine
	key           *token.SigningKey
	authn         *authn.Authenticator
	revs          *authn.Revocations
	// A fleet's change feed makes these look at the store at once.
	pinsKick, policyKick chan struct{}
	trust                *authn.Trust
	proxy                *mcpproxy.Proxy
	oauth                *oauthclient.Broker // the gateway as OAuth client of upstreams
	detector             *detect.Detector    // behavioural monitoring (declared baselines)
	baselineGen          int64               // the learned baselines' stored generation (syncBaselines only)
	awaiting             map[string]bool     // agent and step: a revocation waiting for a reviewer (escMu)
	bgCtx                context.Context     // ends when the gateway stops (response steps waiting for reviewers)
	bgStop               context.CancelFunc
	escMu                sync.Mutex
	contained            map[string]map[string]time.Time // by agent, then session: when it was contained (escalation)
	// containMu serialises reading the store's containments into the
	// proxy; unwritten counts containments not yet written there.
	containMu sync.Mutex
	unwritten atomic.Int64
	// authServer is the built-in authorization server (nil: not configured).
	authServer *authserver.Server
	metrics    *metrics.Metrics
	cp         *audit.Checkpointer
	exporter   *audit.Exporter
	tracer     *telemetry.Tracer
	grants     *grant.Cache
	vault      *secret.Vault
	ca         *identity.CA
	pins       *toolreg.Registry
	ops        *ops.Ops         // the operations the admin API shares with the CLI, over this store
	api        *admin.Server    // the endpoints other than MCP, on both listeners
	out        *outbound.Client // every request the gateway sends of its own accord
	// integrity is the last failed integrity check of the store (nil:
	// none failed); /readyz reports it.
	integrity atomic.Pointer[string]
	// refused are the upstreams not started (no valid signed manifest), by
	// name, with why.
	refused map[string]error
	watch   bool // reload the policy bundle when its files change

	agentLn net.Listener
	adminLn net.Listener
}

// Options are what the daemon needs beyond the configuration file.
type Options struct {
	Log *slog.Logger
	// Policies, if set, replaces the configured policy paths (serve --dev).
	Policies []policy.Source
	// Now, if set, is the clock of the proxy's audit events (the decisions
	// detection sees): `portcullis simulate` runs days of behaviour in
	// seconds with it. Credentials are always checked on the real clock.
	Now func() time.Time
}

// New opens the store and keys, compiles the policy and builds the proxy.
// Upstreams are not started until Run.
func New(cfg *config.Config, opts Options) (_ *Gateway, err error) {
	if err := CheckInlineValues(cfg); err != nil {
		return nil, fmt.Errorf("configuration: %w", err)
	}
	g := &Gateway{cfg: cfg, log: opts.Log, dataDir: ops.DataDir(cfg), metrics: metrics.New(), out: outbound.New(outbound.Options{})}
	g.bgCtx, g.bgStop = context.WithCancel(context.Background())
	if err := os.MkdirAll(g.dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	var set *policy.Set
	var srcs []policy.Source
	var filesErr error // the configured bundle's failure: the store may hold a good one
	if opts.Policies != nil {
		srcs = opts.Policies
		if set, err = policy.Compile(srcs); err != nil {
			return nil, fmt.Errorf("compile policy: %w", err)
		}
	} else {
		set, srcs, filesErr = ops.LoadBundle(cfg)
	}
	g.watch = opts.Policies == nil
	if g.key, err = token.LoadOrCreateKey(filepath.Join(g.dataDir, ops.KeyFile)); err != nil {
		return nil, err
	}
	if g.store, err = ops.OpenStore(cfg, store.Options{Normal: cfg.Store.Synchronous == "normal"}); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			g.store.Close() // the one cleanup of a gateway that could not be built
		}
	}()
	if err := g.store.Check(context.Background()); err != nil {
		return nil, fmt.Errorf("%s: %w: the gateway does not serve on a store it cannot trust; restore it from a backup (`portcullis audit verify` on a copy tells which events survive)", ops.StoreName(cfg), err)
	}
	g.ops = ops.With(cfg, g.store, g.key)
	if g.vault, err = secret.Open(filepath.Join(g.dataDir, ops.KeysDir), g.store); err != nil {
		return nil, err
	}
	if g.cp, err = ops.NewCheckpointer(cfg, g.dataDir, g.store, g.out, g.log.With("component", "audit")); err != nil {
		return nil, err
	}
	sinks, err := newSinks(cfg, g.openSecret, g.out)
	if err != nil {
		return nil, err
	}
	g.exporter = &audit.Exporter{Store: g.store, Sinks: sinks, Log: g.log.With("component", "audit-export")}
	if g.watch {
		if set, err = g.startingBundle(set, srcs, filesErr); err != nil {
			return nil, err
		}
	} else if err := ops.SaveBundle(context.Background(), g.store, set, srcs); err != nil {
		return nil, err
	}
	g.engine = policy.NewEngine(set)
	if g.ca, err = identity.LoadOrCreateCA(filepath.Join(g.dataDir, ops.KeysDir), cfg.Identity.TrustDomain, nil); err != nil {
		return nil, err
	}
	if g.trust, err = authn.LoadTrust(cfg, g.ca); err != nil {
		return nil, err
	}
	g.revs = &authn.Revocations{}
	if g.fleet() {
		g.revs.MaxAge = FleetRevocationsMaxAge
	}
	g.pinsKick, g.policyKick = make(chan struct{}, 1), make(chan struct{}, 1)
	if err := g.revs.Refresh(context.Background(), g.store); err != nil {
		return nil, err
	}
	extSecrets := map[string]string{}
	for _, x := range cfg.Auth.External {
		if x.Introspection == nil {
			continue
		}
		s, err := x.Introspection.ClientSecret.Resolve(cfg.Dir(), g.openSecret)
		if err != nil {
			return nil, fmt.Errorf("auth.external %s: introspection client secret: %w", x.Issuer, err)
		}
		extSecrets[x.Issuer] = s
	}
	localKeys, err := g.startAuthorizationServer(cfg)
	if err != nil {
		return nil, err
	}
	g.authn = authn.New(authn.Options{Key: g.key, Auth: cfg.Auth, Agents: cfg.Agents, Trust: g.trust, Revocations: g.revs, ExternalSecrets: extSecrets, LocalKeys: localKeys, PublicURL: cfg.Listen.PublicURL})
	g.recorder = audit.NewRecorder(g.store, g.log.With("component", "audit"))
	g.recorder.OnWrite = g.metrics.AuditWrite
	g.recorder.SyncWindow = cfg.Audit.SyncWindow.D()
	g.recorder.OnSync = g.metrics.AuditSync
	if o := cfg.Telemetry.OTLP; o != nil {
		h, err := headers(cfg, o.Headers, g.openSecret)
		if err != nil {
			return nil, fmt.Errorf("telemetry: %w", err)
		}
		g.tracer = telemetry.New(o.URL, h, g.out, g.log.With("component", "telemetry"))
	}
	g.grants = grant.NewCache(g.store, nil, g.log.With("component", "grants"))
	g.grants.OnExpired = func(gr grant.Grant) { g.submit(ops.GrantEvent(gr, reason.GrantExpired)) }
	if err := g.grants.Refresh(context.Background()); err != nil {
		return nil, err
	}
	queue, err := newApprovals(cfg, g.store, g.openSecret, g.out, g.log.With("component", "approvals"))
	if err != nil {
		return nil, err
	}
	g.approvals = queue
	if g.memory, err = newMemory(g); err != nil {
		return nil, err
	}
	g.pins = &toolreg.Registry{Store: g.store, Mode: cfg.Pinning, Inspect: inspectTool, OnEvent: g.pinEvent}
	refused := map[string]error{}
	g.refused = map[string]error{}
	if cfg.Manifests.RequireSigned {
		if g.pins.Manifests, refused, err = ops.LoadManifests(cfg); err != nil {
			return nil, err
		}
	}
	screener, err := screen.NewScreener(screeningRules(cfg))
	if err != nil {
		return nil, fmt.Errorf("screening: %w", err)
	}
	g.detector = newDetector(cfg.Detection)
	g.proxy = mcpproxy.New(mcpproxy.Options{
		Now:             opts.Now,
		TaskBudgets:     g.taskBudgets(),
		FleetRate:       g.fleetRate(),
		Sessions:        g.store,
		SharedSessions:  g.fleet(),
		Assert:          g.assertion,
		Decider:         decider{Engine: g.engine, grants: g.grants},
		Recorder:        detecting{g.recorder, g},
		Metrics:         g.metrics,
		Limits:          cfg.Limits,
		SyncBeforeRelay: cfg.Audit.Sync == config.SyncBeforeRelay,
		AllowedHosts:    cfg.Listen.AllowedHosts,
		AllowedOrigins:  cfg.Listen.AllowedOrigins,
		PublicURL:       cfg.Listen.PublicURL,
		Scopes:          cfg.Auth.Scopes,
		Log:             g.log.With("component", "proxy"),
		Tracer:          g.tracer,
		ToolClasses:     toolClasses(cfg),
		Dataflow:        dataflow(cfg),
		Labels:          labels(cfg),
		Spotlight:       spotlights(cfg),
		Screener:        screener,
		Budget:          newBudget(cfg.Limits),
		Approvals:       queue,
		Pinning:         g.pins,
		Intents:         token.NewTypedVerifier(g.key, token.TypIntent, cfg.Auth.Issuer, cfg.Auth.Audience, cfg.Auth.MaxTTL.D(), nil),
	})
	g.oauth = oauthclient.New(oauthclient.Options{
		PublicURL: g.publicOrigin, Vault: g.vault,
		Resolve: func(v config.Value) (string, error) { return v.Resolve(g.cfg.Dir(), g.openSecret) },
		Log:     g.log.With("component", "oauth-client"),
		Event:   g.upstreamAuthEvent,
		Authorized: func(a oauthclient.Authorized) {
			if a.PerUser {
				g.proxy.ElicitationComplete(a.User, a.ID)
			} else {
				g.proxy.Reprobe(a.Upstream)
			}
		},
	})
	for _, u := range cfg.Upstreams {
		if why, ok := refused[u.Name]; ok {
			g.refused[u.Name] = why
			// Not started: no valid signed manifest.
			g.log.Error("upstream not started: no valid signed manifest", "upstream", u.Name, "err", why)
			e := audit.New(audit.TypeSupplyChain, audit.OutcomeDeny, reason.ManifestInvalid, time.Now(), audit.Subject{})
			e.Upstream, e.Detail = u.Name, why.Error()
			if err := audit.WriteNow(context.Background(), g.store, e); err != nil {
				return nil, err
			}
			continue
		}
		dial, err := g.dialer(u)
		if err != nil {
			return nil, err
		}
		g.proxy.AddUpstream(u, dial)
	}
	g.api = admin.New(admin.Options{
		Config: cfg, Ops: g.ops, Key: g.key, CA: g.ca, Authn: g.authn, Revocations: g.revs, Enrolment: g.store,
		Recorder: g.recorder, Decider: g.engine, Budgets: g.proxy, Log: g.log.With("component", "admin"),
		Authorizations: func() any { return g.oauth.Pending(false) },
		Release:        g.release,
	})
	g.metrics.WatchSlots(g.proxy.SlotUse)
	var idpSecret string
	if si := cfg.Console.SignIn; si != nil && si.ClientSecret != nil {
		if idpSecret, err = si.ClientSecret.Resolve(cfg.Dir(), g.openSecret); err != nil {
			return nil, fmt.Errorf("console.sign_in.client_secret: %w", err)
		}
	}
	if g.console, err = console.New(console.Options{Config: cfg, Store: g.store, Ops: g.ops, Engine: g.engine, Log: g.log.With("component", "console"),
		IdPSecret: idpSecret, IdPClient: &http.Client{Timeout: 15 * time.Second},
		Integrity: func() string {
			if m := g.integrity.Load(); m != nil {
				return *m
			}
			return ""
		},
		Upstreams: func() []console.UpstreamState {
			var out []console.UpstreamState
			for _, u := range g.proxy.Upstreams() {
				out = append(out, console.UpstreamState{Name: u.Name, Healthy: u.Healthy()})
			}
			return out
		}}); err != nil {
		return nil, err
	}
	// Held back before a restart, held back after it, from the first
	// request on.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := g.loadContainments(ctx); err != nil {
		return nil, err
	}
	return g, nil
}

func (g *Gateway) dialer(u config.Upstream) (transport.Dialer, error) {
	log := g.log.With("component", "upstream", "upstream", u.Name)
	switch {
	case u.Stdio != nil:
		return mcpproxy.StdioDialer(u.Stdio, g.cfg.Dir(), g.dataDir, g.cfg.Pinning == "strict", g.openSecret, g.cfg.Limits, log, g.egressHooks(u.Name)), nil
	case u.HTTP != nil:
		maxc := g.cfg.Limits.MaxCallsPerUpstream
		if u.MaxConcurrentCalls > 0 {
			maxc = u.MaxConcurrentCalls
		}
		tlsc, err := g.upstreamTLS(u.HTTP)
		if err != nil {
			return nil, fmt.Errorf("upstream %s: %w", u.Name, err)
		}
		return mcpproxy.HTTPDialer(u.HTTP, g.cfg.Dir(), g.openSecret, maxc, g.cfg.Limits, log, g.grantFor(u), tlsc)
	case u.Builtin == "demo":
		d, err := demo.New(filepath.Join(g.dataDir, DemoDir))
		if err != nil {
			return nil, err
		}
		return mcpproxy.InProcessDialer(d.MCPServer, g.cfg.Limits), nil
	case u.Builtin == "memory":
		return mcpproxy.InProcessDialer(g.memory.Server, g.cfg.Limits), nil
	case u.Builtin == "evidence":
		may := func(agent string) bool { t := g.cfg.Detection.Triage; return t != nil && agent == t.Agent }
		return mcpproxy.InProcessDialer(func() *mcp.Server { return evidence.Server(g.store, g.agentProfile, may) }, g.cfg.Limits), nil
	}
	return nil, fmt.Errorf("upstream %s: no transport", u.Name)
}

// grantFor returns how sessions with u obtain their OAuth grant (nil: u
// is not an OAuth upstream). A session serving one user's agents uses
// that user's grant when u authorizes per user; the probe and shared
// sessions use the operator's.
func (g *Gateway) grantFor(u config.Upstream) mcpproxy.GrantFunc {
	if u.HTTP.OAuth == nil {
		return nil
	}
	return func(ctx context.Context) (auth.OAuthHandler, error) {
		user, serves := mcpproxy.LinkUser(ctx)
		if u.HTTP.OAuth.PerUser && serves && user.Key == "" {
			return nil, fmt.Errorf("upstream %s authorizes each user, and this session acts for none", u.Name)
		}
		return g.oauth.Grant(u.Name, u.HTTP, user.Key, user.Name)
	}
}

// publicOrigin is where people's browsers reach the gateway: the
// configured public URL, else the agent listener.
func (g *Gateway) publicOrigin() string {
	if p := g.cfg.Listen.PublicURL; p != "" {
		return strings.TrimRight(p, "/")
	}
	if g.agentLn == nil {
		return ""
	}
	return strings.TrimSuffix(g.AgentURL(), "/mcp")
}

func (g *Gateway) upstreamAuthEvent(e oauthclient.Event) {
	outcome := audit.OutcomeInfo
	if e.Code == reason.UpstreamAuthorizationFailed {
		outcome = audit.OutcomeError
	}
	ev := audit.New(audit.TypeUpstreamAuth, outcome, e.Code, time.Now(), audit.Subject{User: e.User})
	ev.Upstream, ev.Detail = e.Upstream, e.Detail
	g.submit(ev)
}

func (g *Gateway) pinEvent(e toolreg.Event) {
	outcome := audit.OutcomeInfo
	if e.Code == reason.ToolQuarantined {
		outcome = audit.OutcomeDeny
	}
	ev := audit.New(audit.TypeSupplyChain, outcome, e.Code, time.Now(), audit.Subject{})
	ev.Upstream, ev.Target, ev.Detail = e.Upstream, e.Name, e.Detail
	if e.Digest != "" {
		ev.Detail += " (" + e.Digest + ")"
	}
	if e.Code == reason.ToolQuarantined {
		g.log.Warn("tool definition quarantined", "upstream", e.Upstream, "tool", e.Name, "why", e.Detail)
	}
	g.submit(ev)
}

func newBudget(l config.Limits) *budget.Keeper {
	lim := budget.Limits{RepeatWindow: l.RepeatCallWindow.D(), Cooldown: l.BreakerCooldown.D()}
	if l.AgentCallsPerMinute > 0 {
		lim.PerMinute = l.AgentCallsPerMinute
	}
	if l.RepeatCallLimit > 0 {
		lim.RepeatLimit = l.RepeatCallLimit
	}
	return budget.New(lim, nil)
}

// openSecret opens a from_secret reference for injection into an upstream
// request or launch; the value goes nowhere else.
func (g *Gateway) openSecret(name string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	v, err := g.vault.Get(ctx, name)
	if err != nil {
		return "", err
	}
	return v.Reveal(), nil
}

func toolClasses(cfg *config.Config) map[string][]string {
	m := map[string][]string{}
	for _, t := range cfg.Tools {
		if len(t.Classification) > 0 {
			m[t.Name] = t.Classification
		}
	}
	return m
}

// dataflow collects the tools' argument roles and trusted result fields
// (validated with the configuration).
func dataflow(cfg *config.Config) map[string]*mcpproxy.Dataflow {
	m := map[string]*mcpproxy.Dataflow{}
	for _, t := range cfg.Tools {
		if len(t.Arguments) == 0 && len(t.TrustedFields) == 0 {
			continue
		}
		df := &mcpproxy.Dataflow{Roles: t.Arguments}
		for _, f := range t.TrustedFields {
			if p, err := provenance.ParsePath(f); err == nil {
				df.TrustedFields = append(df.TrustedFields, p)
			}
		}
		m[t.Name] = df
	}
	return m
}

// spotlights collects the upstreams' spotlighting modes.
func spotlights(cfg *config.Config) map[string]string {
	m := map[string]string{}
	for _, u := range cfg.Upstreams {
		if u.Spotlight != "" {
			m[u.Name] = u.Spotlight
		}
	}
	return m
}

// labels collects the configured session labels of upstreams and tools.
func labels(cfg *config.Config) mcpproxy.Labels {
	l := mcpproxy.Labels{Upstreams: map[string][]string{}, Tools: map[string][]string{}}
	for _, u := range cfg.Upstreams {
		if u.Labels != nil {
			l.Upstreams[u.Name] = *u.Labels
		}
	}
	for _, t := range cfg.Tools {
		if t.Labels != nil {
			l.Tools[t.Name] = *t.Labels
		}
	}
	return l
}

// Proxy returns the enforcement point (for `wrap` and tests).
func (g *Gateway) Proxy() *mcpproxy.Proxy { return g.proxy }

// Key returns the token-signing key.
func (g *Gateway) Key() *token.SigningKey { return g.key }

// Authenticator returns the agent authenticator.
func (g *Gateway) Authenticator() *authn.Authenticator { return g.authn }

// Listen binds the agent and admin listeners, so that callers know the
// addresses (":0" picks free ports) before Run.
func (g *Gateway) Listen() error {
	var err error
	if g.agentLn, err = net.Listen("tcp", g.cfg.Listen.Address); err != nil {
		return fmt.Errorf("listen for agents: %w", err)
	}
	if g.cfg.Listen.TLS.Enabled {
		tc, err := g.agentTLS()
		if err != nil {
			g.agentLn.Close()
			return fmt.Errorf("agent TLS: %w", err)
		}
		g.agentLn = tls.NewListener(g.agentLn, tc)
	}
	if g.adminLn, err = net.Listen("tcp", g.cfg.Listen.Admin); err != nil {
		g.agentLn.Close()
		return fmt.Errorf("listen for admin: %w", err)
	}
	return nil
}

// AgentAddr is the bound agent listener address.
func (g *Gateway) AgentAddr() string { return g.agentLn.Addr().String() }

// AgentURL is the MCP endpoint agents connect to: https when the agent
// listener serves TLS.
func (g *Gateway) AgentURL() string {
	scheme := "http"
	if g.cfg.Listen.TLS.Enabled {
		scheme = "https"
	}
	return scheme + "://" + g.AgentAddr() + "/mcp"
}

// AdminAddr is the bound admin listener address.
func (g *Gateway) AdminAddr() string { return g.adminLn.Addr().String() }

// Run serves until ctx ends, then shuts down in order (see the package doc).
func (g *Gateway) Run(ctx context.Context) error {
	if g.agentLn == nil {
		if err := g.Listen(); err != nil {
			return err
		}
	}
	if err := g.recorder.Open(ctx); err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	bg := g.startBackground()
	if err := g.waitUpstreams(ctx); err != nil {
		g.agentLn.Close()
		g.adminLn.Close()
		return errors.Join(err, bg.stop())
	}
	agentSrv := &http.Server{Handler: g.agentMux(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(g.log.Handler(), slog.LevelWarn)}
	adminSrv := &http.Server{Handler: g.adminMux(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 2)
	var wg sync.WaitGroup
	for _, s := range []struct {
		srv *http.Server
		ln  net.Listener
	}{{agentSrv, g.agentLn}, {adminSrv, g.adminLn}} {
		wg.Add(1)
		go func() { defer wg.Done(); errc <- serve(s.srv, s.ln) }()
	}
	g.log.Info("gateway serving", "agents", g.AgentURL(), "admin", "http://"+g.AdminAddr(), "policy", g.engine.Version())

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	g.drain(agentSrv)
	adminSrv.Close()
	wg.Wait()
	return errors.Join(runErr, bg.stop())
}

// RunStdio serves one agent over in/out (`wrap`) until the agent closes its
// end or ctx ends, then shuts down in order. principal is the agent's
// credential, checked on every message.
func (g *Gateway) RunStdio(ctx context.Context, in io.Reader, out io.Writer, principal mcpproxy.PrincipalFunc) error {
	if err := g.recorder.Open(ctx); err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	bg := g.startBackground()
	if err := g.waitUpstreams(ctx); err != nil {
		return errors.Join(err, bg.stop())
	}
	err := g.proxy.ServeStdio(ctx, in, out, principal)
	return errors.Join(err, bg.stop())
}

// UpstreamStartWait bounds how long the gateway waits for upstreams to
// connect before serving agents (connections wait in the listen backlog).
const UpstreamStartWait = 30 * time.Second

// waitUpstreams waits for the upstreams' first probes and refuses to serve
// when two of them offer the same name (a tool, prompt, resource URI or
// template): which one an agent would reach must never be a guess.
func (g *Gateway) waitUpstreams(ctx context.Context) error {
	wctx, cancel := context.WithTimeout(ctx, UpstreamStartWait)
	defer cancel()
	if err := g.proxy.WaitReady(wctx); err != nil {
		g.log.Warn("serving before every upstream is ready; their tools appear when they connect", "err", err)
	}
	if cs := g.proxy.Collisions(); len(cs) > 0 {
		var msgs []string
		for _, c := range cs {
			msgs = append(msgs, c.String())
		}
		slices.Sort(msgs)
		return fmt.Errorf("upstreams collide (give one of each pair a namespace: prefix, or a prefix of its own):\n  %s", strings.Join(msgs, "\n  "))
	}
	return nil
}

// background is what runs behind the fronts, in two sets stopped in
// order: the services (upstream supervisors, checkpoints, grant expiry,
// revocation and pin refresh, policy reload, telemetry, audit export),
// then the audit recorder, which must outlive everything that records.
type background struct {
	g        *Gateway
	services *tasks
	recorder *tasks
}

func (g *Gateway) startBackground() *background {
	b := &background{g: g}
	b.recorder = startTasks(g.log, task{"audit recorder", g.recorder.Run})
	services := []task{
		{"upstreams", g.proxy.Run},
		{"audit checkpoints", g.cp.Run},
		{"grant expiry", g.grants.Run},
		{"revocations", func(ctx context.Context) error { return g.revs.Run(ctx, g.store, g.log.With("component", "authn")) }},
		{"store integrity", g.checkStore},
		{"tool pins", func(ctx context.Context) error {
			g.pins.Watch(ctx, time.Second, g.pinsKick, g.proxy.RefreshAll)
			return nil
		}},
		{"telemetry", g.tracer.Run},
		{"audit export", g.runExport}, // what was not exported yet is sent after the next start
		{"stored sessions", g.keepSessions},
	}
	if g.watch {
		services = append(services, task{"policy reload", g.watchPolicy})
	}
	if !g.detector.Empty() {
		services = append(services, task{"containment releases", g.watchReleases})
		if err := g.resumeSteps(context.Background()); err != nil {
			g.log.Error("response steps waiting for reviewers not resumed", "err", err)
		}
	}
	if g.cfg.Detection.Learning != nil {
		services = append(services, task{"learned baselines", g.syncBaselines})
	}
	if g.fleet() {
		services = append(services, task{"fleet pruning", g.pruneBudgets}, task{"change feed", g.followChanges})
	}
	services = append(services, task{"memory expiry", func(ctx context.Context) error { return g.memory.Run(ctx, time.Minute) }},
		task{"posture metrics", g.watchPosture})
	b.services = startTasks(g.log, services...)
	g.lifecycle(reason.Started)
	g.logSandboxKernel()
	return b
}

// logSandboxKernel says at start what this kernel lets the built-in
// sandbox enforce, when a stdio upstream uses it: what a launch would
// refuse shows here first.
func (g *Gateway) logSandboxKernel() {
	for _, u := range g.cfg.Upstreams {
		if u.Stdio == nil || u.Stdio.Sandbox != nil && u.Stdio.Sandbox.Mode != "" && u.Stdio.Sandbox.Mode != config.SandboxBuiltin {
			continue
		}
		abi, userns, cgroups := sandbox.Kernel()
		log := g.log.Info
		if abi < sandbox.MinLandlockABI || userns != "available" {
			log = g.log.Error // every sandboxed launch will be refused
		}
		log("built-in sandbox", "landlock_abi", abi, "landlock_needed", sandbox.MinLandlockABI, "user_namespaces", userns,
			"cgroups", cgroups, "limits", "rlimits per process (cgroup controllers not used)")
		return
	}
}

// stop stops the services and waits for every one, then records the stop,
// flushes the recorder, signs a final checkpoint and closes the store.
func (b *background) stop() error {
	b.g.bgStop()
	b.services.stop()
	b.g.lifecycle(reason.Stopped)
	b.recorder.stop()
	// The final checkpoint covers every event, the stop event included.
	_, cerr := b.g.cp.Checkpoint(context.Background())
	if cerr != nil {
		b.g.log.Error("final audit checkpoint", "err", cerr)
	}
	err := errors.Join(cerr, b.g.store.Close())
	b.g.log.Info("gateway stopped")
	return err
}

func serve(s *http.Server, ln net.Listener) error {
	if err := s.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// drain stops accepting agent connections and waits (up to the grace
// period) for in-flight calls to finish before closing what remains, such as
// idle SSE streams.
func (g *Gateway) drain(s *http.Server) {
	grace := g.cfg.Limits.ShutdownGrace.D()
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	shut := make(chan struct{})
	go func() { s.Shutdown(ctx); close(shut) }()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for g.proxy.InFlight() > 0 {
		select {
		case <-ctx.Done():
			g.log.Warn("shutdown grace expired with calls in flight", "in_flight", g.proxy.InFlight())
			s.Close()
			return
		case <-tick.C:
		}
	}
	// The last answers are handed to the HTTP layer when the count drops
	// to zero, not yet written: let them reach the agents (Shutdown returns
	// once only the agents' idle event streams are left, or after a short
	// settle) before the remaining connections are closed.
	select {
	case <-shut:
	case <-time.After(500 * time.Millisecond):
	}
	s.Close()
}

func (g *Gateway) lifecycle(what reason.Code) {
	e := audit.New(audit.TypeLifecycle, audit.OutcomeInfo, what, time.Now(), audit.Subject{})
	e.PolicyVersion = g.engine.Version()
	// The declared baselines and the playbook in force are versioned with
	// the start: their digest, as policy's is.
	if b, err := json.Marshal(g.cfg.Detection); err == nil && what == reason.Started {
		sum := sha256.Sum256(b)
		e.Detail = fmt.Sprintf("detection configuration sha256:%x (%d declared baselines, %d response rules)", sum[:16], len(g.cfg.Detection.Baselines), len(g.cfg.Detection.Response))
	}
	if err := g.recorder.Submit(e); err != nil {
		g.log.Error("audit lifecycle event", "err", err)
	}
}

func (g *Gateway) agentMux() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/mcp", g.proxy.HTTPHandler(g.authn))
	mux.HandleFunc("GET "+oauthclient.CallbackPath+"/{upstream}", g.oauth.ServeCallback)
	if g.authServer != nil {
		g.authServer.Routes(mux)
	}
	g.api.AgentRoutes(mux)
	return mux
}

func (g *Gateway) adminMux() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", g.metrics.Handler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", g.serveReady)
	mux.Handle("/v1/", g.api.OperatorHandler())
	mux.Handle(console.Prefix+"/", g.console.Handler())
	return mux
}

// serveReady answers /readyz: ready (200) when the store answers and
// passed its integrity check and the gateway can serve what policy
// allows: at least one configured upstream is connected and not shedding
// calls (or none is configured). The body says so on its first line and
// then gives each upstream's state (ready, busy, saturated, down, refused),
// so that one upstream down among several is visible without taking the
// whole gateway out of a balancer.
func (g *Gateway) serveReady(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	var lines []string
	storeOK := true
	if err := g.store.Ping(ctx); err != nil {
		storeOK = false
		lines = append(lines, "store: "+err.Error())
	}
	if p := g.integrity.Load(); p != nil {
		storeOK = false
		lines = append(lines, "store: "+*p)
	}
	if g.fleet() {
		line, ok := g.fleetSync()
		storeOK = storeOK && ok
		lines = append(lines, line)
	}
	if n := g.unwritten.Load(); n > 0 {
		// A session held back here could get away through another
		// gateway, or a restart.
		storeOK = false
		lines = append(lines, fmt.Sprintf("containments: %d not written to the store yet (held in this gateway only)", n))
	}
	configured, serving := len(g.cfg.Upstreams), 0
	for _, u := range g.proxy.Upstreams() {
		used, capacity, queued, maxQueue := u.Load()
		switch {
		case !u.Healthy():
			lines = append(lines, "upstream "+u.Name+": down")
		case used >= capacity && queued >= maxQueue:
			// A full queue sheds every new call.
			lines = append(lines, fmt.Sprintf("upstream %s: saturated, shedding calls (%d/%d calls, %d/%d queued)", u.Name, used, capacity, queued, maxQueue))
		case queued > 0:
			serving++
			lines = append(lines, fmt.Sprintf("upstream %s: busy (%d/%d calls, %d/%d queued)", u.Name, used, capacity, queued, maxQueue))
		default:
			serving++
			lines = append(lines, "upstream "+u.Name+": ready")
		}
	}
	names := make([]string, 0, len(g.refused))
	for n := range g.refused {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		lines = append(lines, "upstream "+n+": refused: "+g.refused[n].Error())
	}
	if !storeOK || (configured > 0 && serving == 0) {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "not ready")
	} else {
		fmt.Fprintln(w, "ready")
	}
	for _, l := range lines {
		fmt.Fprintln(w, l)
	}
}

// IntegrityInterval is how often a running gateway re-checks its store
// (it is checked at start too).
const IntegrityInterval = time.Hour

// checkStore re-checks the store every IntegrityInterval until ctx ends. A
// store that fails makes /readyz fail; calls keep failing closed on their
// own when writes fail.
func (g *Gateway) checkStore(ctx context.Context) error {
	every(ctx, IntegrityInterval, func() {
		switch err := g.store.Check(ctx); {
		case ctx.Err() != nil:
		case errors.Is(err, store.ErrCorrupt):
			msg := err.Error()
			g.integrity.Store(&msg)
			g.log.Error("store integrity check failed", "err", err)
		case err != nil:
			g.log.Warn("store integrity check could not run; trying again at the next interval", "err", err)
		default:
			g.integrity.Store(nil)
		}
	})
	return nil
}

// Ops performs operations on the gateway's own store (the CLI's, with the
// gateway's signing key).
func (g *Gateway) Ops() *ops.Ops { return g.ops }
