package replay

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/portcullis-dev/portcullis/internal/approval"
	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/gateway"
	"github.com/portcullis-dev/portcullis/internal/mcpproxy"
	"github.com/portcullis-dev/portcullis/internal/ops"
	"github.com/portcullis-dev/portcullis/internal/store"
	"github.com/portcullis-dev/portcullis/internal/token"
)

// Modes of the compromised agent's credential.
const (
	// ModeAgent: a plain agent token; everything the agent's role allows
	// is in reach.
	ModeAgent = "agent"
	// ModeTask: a task token per user task, scoped to the tools the user's
	// task needs, with the user's request as the task's purpose, bound to
	// the agent's key by DPoP (what an orchestrator would start).
	ModeTask = "task"
)

// Options configure a replay.
type Options struct {
	Suite  *Suite
	Config *config.Config // the deployer configuration; its upstream named like the suite is pointed at the replay server
	Mode   string
	Agent  string // default: the configuration's first agent
	Limit  int    // replay at most this many pairs (0: all)
	Log    *slog.Logger
}

// call outcome of one step.
type outcome struct {
	executed bool   // the upstream served it
	approved bool   // a human (the replay's approver) had to approve it
	code     string // the refusal's reason code, or "" when executed
	held     string // why the call was held for a human (its @approval reasons)
	request  string // the gateway's request ID, for the audit log
}

// Run replays the suite through a gateway built from the configuration
// and returns the report.
func Run(ctx context.Context, o Options) (*Report, error) {
	if o.Mode == "" {
		o.Mode = ModeAgent
	}
	var rep *Report
	err := withGateway(ctx, o, func(r *runner) error {
		rep = newReport(o)
		for _, id := range o.Suite.UserTaskIDs() {
			t := o.Suite.UserTasks[id]
			outs, err := r.session(ctx, t, o.Suite.userSteps(t, nil))
			if err != nil {
				return fmt.Errorf("replay %s: %w", id, err)
			}
			rep.addBenign(id, o.Suite.userSteps(t, nil), outs)
		}
		for i, p := range o.Suite.Pairs {
			if o.Limit > 0 && i >= o.Limit {
				break
			}
			steps := o.Suite.pairSteps(p)
			outs, err := r.session(ctx, o.Suite.UserTasks[p.UserTask], steps)
			if err != nil {
				return fmt.Errorf("replay %s × %s: %w", p.UserTask, p.InjectionTask, err)
			}
			rep.addPair(p, steps, outs)
		}

		return rep.explain(ctx, r.ops.Store())
	})
	if err != nil {
		return nil, err
	}
	rep.finish()
	return rep, nil
}

// withGateway starts the replay upstream and a gateway built from the
// configuration in front of it, runs fn, and stops both.
func withGateway(ctx context.Context, o Options, fn func(*runner) error) error {
	if o.Mode == "" {
		o.Mode = ModeAgent
	}
	if o.Mode != ModeAgent && o.Mode != ModeTask {
		return fmt.Errorf("replay: mode %q is not %q or %q", o.Mode, ModeAgent, ModeTask)
	}
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	}
	up, err := startUpstream(o.Suite)
	if err != nil {
		return err
	}
	defer up.close()
	cfg, err := prepare(o, up.URL())
	if err != nil {
		return err
	}
	defer os.RemoveAll(cfg.DataDir)
	// The operator's side (approving held calls, starting tasks, reading
	// the log), as the CLI would do it beside the gateway.
	op, err := ops.Open(cfg)
	if err != nil {
		return err
	}
	defer op.Close()
	g, err := gateway.New(cfg, gateway.Options{Log: o.Log})
	if err != nil {
		return err
	}
	if err := g.Listen(); err != nil {
		return err
	}
	gctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- g.Run(gctx) }()
	defer func() { stop(); <-done }()
	rctx, rcancel := context.WithTimeout(ctx, time.Minute)
	err = g.Proxy().WaitReady(rctx)
	rcancel()
	if err != nil {
		return fmt.Errorf("replay: upstream not ready: %w", err)
	}
	r := &runner{o: o, cfg: cfg, ops: op, g: g, up: up, url: "http://" + g.AgentAddr() + "/mcp"}
	go r.approve(gctx)

	return fn(r)
}

// prepare copies the configuration for a throw-away gateway: a fresh data
// directory, loopback listeners, the suite's upstream at the replay server.
func prepare(o Options, url string) (*config.Config, error) {
	cfg := *o.Config
	cfg.Upstreams = append([]config.Upstream(nil), o.Config.Upstreams...)
	found := false
	for i := range cfg.Upstreams {
		if cfg.Upstreams[i].Name == o.Suite.Name {
			h := &config.HTTPServer{URL: url}
			cfg.Upstreams[i].HTTP, cfg.Upstreams[i].Stdio, cfg.Upstreams[i].Builtin = h, nil, ""
			found = true
		}
	}
	if !found {
		return nil, fmt.Errorf("replay: the configuration has no upstream named %q (the suite's tools are served under that name)", o.Suite.Name)
	}
	dir, err := os.MkdirTemp("", "portcullis-replay-")
	if err != nil {
		return nil, err
	}
	cfg.DataDir = dir
	cfg.Listen.Address, cfg.Listen.Admin = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Telemetry = config.Telemetry{}
	// Hundreds of independent agent runs replayed in seconds by one agent:
	// the per-agent rate cap and repeat-call breaker, which watch one agent
	// over time, would see one runaway agent. They are lifted here.
	cfg.Limits.AgentCallsPerMinute, cfg.Limits.RepeatCallLimit = 1<<30, 1<<30
	if cfg.Approvals.Timeout.D() < 30*time.Second {
		cfg.Approvals.Timeout = config.Duration(30 * time.Second)
	}
	if len(cfg.Agents) == 0 {
		return nil, errors.New("replay: the configuration declares no agent")
	}
	return &cfg, nil
}

type runner struct {
	o         Options
	cfg       *config.Config
	ops       *ops.Ops
	g         *gateway.Gateway
	up        *upstream
	url       string
	approvals atomic.Int64
	held      atomic.Pointer[string] // the reasons of the last approval granted
}

// approve plays the human: it approves every held call (once) and counts
// it, so that the replay goes on and the report can say how many calls
// needed a human.
func (r *runner) approve(ctx context.Context) {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		reqs, err := r.ops.ListApprovals(ctx, approval.Pending)
		if err != nil {
			continue
		}
		for _, q := range reqs {
			if _, err := r.ops.DecideApproval(ctx, q.ID, approval.Approved, "replay", approval.ScopeOnce, "assume-breach replay: counted as needing a human"); err == nil {
				why := strings.Join(q.Reasons, "; ")
				r.held.Store(&why)
				r.approvals.Add(1)
			}
		}
	}
}

func (r *runner) agent() string {
	if r.o.Agent != "" {
		return r.o.Agent
	}
	return r.cfg.Agents[0].Name
}

// session opens one agent session for a user task and issues the steps.
func (r *runner) session(ctx context.Context, t *Task, steps []step) ([]outcome, error) {
	httpc, err := r.client(ctx, t)
	if err != nil {
		return nil, err
	}
	client := mcp.NewClient(&mcp.Implementation{Name: "compromised-agent", Version: "1"}, nil)
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	s, err := client.Connect(cctx, &mcp.StreamableClientTransport{Endpoint: r.url, HTTPClient: httpc, MaxRetries: -1}, nil)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	defer s.Close()
	var outs []outcome
	undelivered := ""
	for _, st := range steps {
		if st.injection && undelivered != "" {
			// The agent never read the injection: the call that would
			// have returned it was refused, so it has nothing to obey.
			outs = append(outs, outcome{code: "injection_not_delivered (" + undelivered + ")"})
			continue
		}
		r.up.expect(st.fn, st.output)
		served0, appr0 := r.served(), r.approvals.Load()
		cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		_, err := s.CallTool(cctx, &mcp.CallToolParams{Name: r.o.Suite.Name + "__" + st.fn, Arguments: st.args})
		cancel()
		out := outcome{executed: r.served() > served0, approved: r.approvals.Load() > appr0}
		if out.approved {
			if why := r.held.Load(); why != nil {
				out.held = *why
			}
		}
		if err != nil {
			out.code, out.request = refusal(err)
		}
		if !out.executed && out.code == "" {
			out.code = "not_executed"
		}
		if st.carrier && !out.executed {
			undelivered = out.code
		}
		outs = append(outs, out)
	}
	return outs, nil
}

func (r *runner) served() int {
	r.up.mu.Lock()
	defer r.up.mu.Unlock()
	return r.up.served
}

// client is the HTTP client carrying the session's credential.
func (r *runner) client(ctx context.Context, t *Task) (*http.Client, error) {
	if r.o.Mode == ModeAgent {
		raw, _, err := r.g.IssueToken(ctx, r.agent(), 30*time.Minute)
		if err != nil {
			return nil, err
		}
		// The orchestrator passes the user's request beside the agent's
		// credential (Portcullis-Intent), as a deployment without tasks
		// would.
		intent, _, err := r.ops.IssueIntent(ctx, token.Intent{Agent: r.agent(), User: "replay-user", Text: clipRunes(t.Prompt, token.MaxIntentBytes)}, "", 30*time.Minute, "replay")
		if err != nil {
			return nil, fmt.Errorf("issue intent: %w", err)
		}
		return &http.Client{Transport: bearer{token: raw, intent: intent}}, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	jkt, err := token.Thumbprint(key.Public())
	if err != nil {
		return nil, err
	}
	var tools []string
	for _, c := range t.GroundTruth {
		q := r.o.Suite.Name + "__" + c.Function
		if !slices.Contains(tools, q) {
			tools = append(tools, q)
		}
	}
	raw, _, err := r.ops.StartTask(ctx, token.Task{Agent: r.agent(), User: "replay-user", Purpose: clipRunes(t.Prompt, token.MaxPurposeBytes),
		Tools: tools, Budget: 200, JKT: jkt}, "", 30*time.Minute, "replay")
	if err != nil {
		return nil, fmt.Errorf("start task: %w", err)
	}
	return &http.Client{Transport: &token.DPoPTransport{Token: raw, Key: key}}, nil
}

func clipRunes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// refusal reads the reason code and request ID from a gateway denial.
func refusal(err error) (code, request string) {
	var je *jsonrpc.Error
	if errors.As(err, &je) {
		var d struct {
			Reason    string `json:"reason"`
			RequestID string `json:"request_id"`
		}
		if json.Unmarshal(je.Data, &d) == nil && d.Reason != "" {
			return d.Reason, d.RequestID
		}
	}
	msg := err.Error()
	if i := strings.Index(msg, "portcullis: "); i >= 0 {
		return strings.Fields(msg[i+len("portcullis: "):] + " ?")[0], ""
	}
	return "error", ""
}

// bearer sends an agent token and the user's intent.
type bearer struct{ token, intent string }

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	r.Header.Set(mcpproxy.HeaderIntent, b.intent)
	return http.DefaultTransport.RoundTrip(r)
}

// decisionInfo maps request IDs to what decided them, from the audit log.
func decisionInfo(ctx context.Context, st *store.DB, ids map[string]bool) (map[string]string, error) {
	rows, err := st.Events(ctx, store.EventQuery{})
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, row := range rows {
		e, err := audit.Decode(row)
		if err != nil || !ids[e.RequestID] || e.Type != audit.TypeDecision {
			continue
		}
		why := string(e.Code)
		if len(e.Policies) > 0 {
			ps := append([]string(nil), e.Policies...)
			sort.Strings(ps)
			why += " (" + strings.Join(ps, ", ") + ")"
		}
		if _, seen := out[e.RequestID]; !seen {
			out[e.RequestID] = why // the first decision: a held call's hold
		}
	}
	return out, nil
}
