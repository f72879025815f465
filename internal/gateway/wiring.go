package gateway

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/budget"
	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/demo"
	"github.com/portcullis-dev/portcullis/internal/evidence"
	"github.com/portcullis-dev/portcullis/internal/mcpproxy"
	"github.com/portcullis-dev/portcullis/internal/oauthclient"
	"github.com/portcullis-dev/portcullis/internal/provenance"
	"github.com/portcullis-dev/portcullis/internal/reason"
	"github.com/portcullis-dev/portcullis/internal/toolreg"
	"github.com/portcullis-dev/portcullis/internal/transport"
)

// What New gives the enforcement point from the configuration: the
// upstreams' dialers and grants, budgets, tool classes, data-flow rules,
// spotlighting and session labels; and the events of the upstreams'
// OAuth clients and of tool pinning.

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
