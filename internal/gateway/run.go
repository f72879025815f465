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
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/console"
	"github.com/portcullis-dev/portcullis/internal/mcpproxy"
	"github.com/portcullis-dev/portcullis/internal/oauthclient"
	"github.com/portcullis-dev/portcullis/internal/ops"
	"github.com/portcullis-dev/portcullis/internal/reason"
	"github.com/portcullis-dev/portcullis/internal/sandbox"
	"github.com/portcullis-dev/portcullis/internal/store"
)

// Running the gateway: its listeners, serving over HTTP or stdio, the
// background tasks, draining on stop, lifecycle events, the agent and
// admin muxes, and readiness.

// Listen binds the agent and admin listeners, so that callers know the
// addresses (":0" picks free ports) before Run.
func (g *Gateway) Listen() error {
	var err error
	if g.agentLn, err = net.Listen("tcp", g.cfg.Listen.Address); err != nil {
		return fmt.Errorf("listen for agents: %w", err)
	}
	g.agentLn = mcpproxy.HoldingListener(g.agentLn)
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
	agentSrv := &http.Server{Handler: g.agentMux(), ReadHeaderTimeout: 10 * time.Second, ConnContext: mcpproxy.ConnContext, ErrorLog: slog.NewLogLogger(g.log.Handler(), slog.LevelWarn)}
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
	g.log.Info("gateway serving", "agents", g.AgentURL(), "admin", "http://"+g.AdminAddr(), "policy", g.engine.Version(), "audit_sync", g.cfg.Audit.Sync)

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
		return fmt.Errorf("upstreams collide (which one an agent reaches must never be a guess):\n  %s", strings.Join(msgs, "\n  "))
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
