package gateway

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portcullis-dev/portcullis/internal/admin"
	"github.com/portcullis-dev/portcullis/internal/approval"
	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/authn"
	"github.com/portcullis-dev/portcullis/internal/authserver"
	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/console"
	"github.com/portcullis-dev/portcullis/internal/detect"
	"github.com/portcullis-dev/portcullis/internal/grant"
	"github.com/portcullis-dev/portcullis/internal/identity"
	"github.com/portcullis-dev/portcullis/internal/mcpproxy"
	"github.com/portcullis-dev/portcullis/internal/memory"
	"github.com/portcullis-dev/portcullis/internal/metrics"
	"github.com/portcullis-dev/portcullis/internal/oauthclient"
	"github.com/portcullis-dev/portcullis/internal/ops"
	"github.com/portcullis-dev/portcullis/internal/outbound"
	"github.com/portcullis-dev/portcullis/internal/policy"
	"github.com/portcullis-dev/portcullis/internal/reason"
	"github.com/portcullis-dev/portcullis/internal/secret"
	"github.com/portcullis-dev/portcullis/internal/store"
	"github.com/portcullis-dev/portcullis/internal/telemetry"
	"github.com/portcullis-dev/portcullis/internal/token"
	"github.com/portcullis-dev/portcullis/internal/toolreg"
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
	g.exporter.Durable = g.recorder.DurableSize // a sink gets only what is on disk
	g.recorder.OnWrite = g.metrics.AuditWrite
	g.recorder.SyncWindow = cfg.Audit.SyncWindow.D()
	g.recorder.LazyCommits = cfg.Audit.Sync == config.SyncBackground
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
	screener, err := newScreener(cfg, screeningRules(cfg))
	if err != nil {
		return nil, fmt.Errorf("screening: %w", err)
	}
	if names := classifierExceptions(cfg); len(names) > 0 {
		g.log.Warn("screening.classifier is every_segment, but these upstreams' content is scored only where the classifier's gate points (their classifier: gated)", "upstreams", names)
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
		SyncBackground:  cfg.Audit.Sync == config.SyncBackground,
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

// Proxy returns the enforcement point (for `wrap` and tests).
func (g *Gateway) Proxy() *mcpproxy.Proxy { return g.proxy }

// Key returns the token-signing key.
func (g *Gateway) Key() *token.SigningKey { return g.key }

// Authenticator returns the agent authenticator.
func (g *Gateway) Authenticator() *authn.Authenticator { return g.authn }
