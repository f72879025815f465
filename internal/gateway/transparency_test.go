//lint:file-ignore SA1019 roots and logging are deprecated as of MCP 2026-07-28, but the gateway must relay them for older peers.

package gateway

// Transparency end to end, with the real server-everything from npm over
// stdio and streamable HTTP: what passes policy reaches the other side as
// it would direct (issue: "the hot path, rebuilt").

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/reason"
)

// everythingBoth starts gateways in front of server-everything over stdio
// and over streamable HTTP.
func everythingBoth(t *testing.T, extraPolicy, marker string) map[string]*harness {
	url := startEverythingHTTP(t)
	return map[string]*harness{
		"stdio": everythingStdio(t, extraPolicy, marker),
		"http": startGateway(t, fmt.Sprintf(`
version: 1
data_dir: DIR/data
policy: {paths: [DIR/policy.cedar]}
agents:
  - {name: tester, roles: [testers]}
  - {name: other, roles: [testers]}
upstreams:
  - name: everything
    http: {url: %q}
`, url), map[string]string{"policy.cedar": everythingPolicy + extraPolicy}),
	}
}

// rawSession speaks JSON-RPC to the gateway by hand, to see the bytes a
// client library would hide.
type rawSession struct {
	h     *harness
	token string
	sid   string
	next  int
}

func (h *harness) rawSession(agent, caps string) *rawSession {
	h.t.Helper()
	r := &rawSession{h: h, token: h.token(agent, 10*time.Minute)}
	resp, body := h.post(r.token, `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":`+caps+`,"clientInfo":{"name":"raw","version":"1"}}}`, nil)
	r.sid = resp.Header.Get("Mcp-Session-Id")
	if r.sid == "" || !strings.Contains(body, "protocolVersion") {
		h.t.Fatalf("initialize: %d %s", resp.StatusCode, body)
	}
	h.post(r.token, `{"jsonrpc":"2.0","method":"notifications/initialized"}`, r.headers())
	return r
}

func (r *rawSession) headers() map[string]string {
	return map[string]string{"Mcp-Session-Id": r.sid, "Mcp-Protocol-Version": "2025-11-25"}
}

// call sends a request and returns the answer's result or error object,
// and every message that came before it.
func (r *rawSession) call(method, params string) (answer map[string]json.RawMessage, before []string) {
	r.h.t.Helper()
	r.next++
	id := fmt.Sprint(r.next)
	body := `{"jsonrpc":"2.0","id":` + id + `,"method":"` + method + `"`
	if params != "" {
		body += `,"params":` + params
	}
	_, out := r.h.post(r.token, body+"}", r.headers())
	var msgs []string
	if strings.HasPrefix(strings.TrimSpace(out), "{") {
		msgs = []string{out}
	} else {
		sc := bufio.NewScanner(strings.NewReader(out))
		sc.Buffer(make([]byte, 0, 1<<20), 16<<20)
		for sc.Scan() {
			if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				msgs = append(msgs, d)
			}
		}
	}
	for _, m := range msgs {
		var env map[string]json.RawMessage
		json.Unmarshal([]byte(m), &env)
		if string(env["id"]) == id && (env["result"] != nil || env["error"] != nil) {
			return env, before
		}
		before = append(before, m)
	}
	r.h.t.Fatalf("%s: no answer in %q", method, out)
	return nil, nil
}

func TestCallWithoutArgumentsReachesTheServerWithout(t *testing.T) {
	t.Parallel()
	for name, h := range everythingBoth(t, "", "e2e-noargs") {
		t.Run(name, func(t *testing.T) {
			r := h.rawSession("tester", `{}`)
			// No "arguments" at all: the TypeScript server refuses
			// "arguments": null; it must not get one.
			ans, _ := r.call("tools/call", `{"name":"everything__get-tiny-image"}`)
			if ans["error"] != nil || !strings.Contains(string(ans["result"]), `"type":"image"`) {
				t.Fatalf("call without arguments: %s %s", ans["error"], ans["result"])
			}
		})
	}
}

// TestEveryProgressNotificationArrives: 100 calls; on the wire, every
// progress notification of each reaches the agent under its own token, in
// order, before the answer. (Read raw: client libraries may hand
// notifications to handlers concurrently with the answer.)
func TestEveryProgressNotificationArrives(t *testing.T) {
	t.Parallel()
	for name, h := range everythingBoth(t, "", "e2e-progress-all") {
		t.Run(name, func(t *testing.T) {
			r := h.rawSession("tester", `{}`)
			for i := 0; i < 100; i++ {
				tok := fmt.Sprintf("call-%d", i)
				// Each call differs (the repeat-call breaker stops identical loops).
				args := fmt.Sprintf(`{"duration":%.4f,"steps":4}`, 0.02+float64(i)/10000)
				ans, before := r.call("tools/call", `{"name":"everything__trigger-long-running-operation","arguments":`+args+`,"_meta":{"progressToken":"`+tok+`"}}`)
				if ans["error"] != nil {
					t.Fatalf("call %d: %s", i, ans["error"])
				}
				var seen []string
				for _, m := range before {
					var n struct {
						Method string
						Params struct {
							ProgressToken string
							Progress      float64
						}
					}
					json.Unmarshal([]byte(m), &n)
					if n.Method == "notifications/progress" && n.Params.ProgressToken == tok {
						seen = append(seen, fmt.Sprint(n.Params.Progress))
					}
				}
				if strings.Join(seen, ",") != "1,2,3,4" {
					t.Fatalf("call %d: progress %v before the answer, want 1,2,3,4", i, seen)
				}
			}
		})
	}
}

func TestLogNotificationsAreRelayed(t *testing.T) {
	t.Parallel()
	for name, h := range everythingBoth(t, "", "e2e-logging") {
		t.Run(name, func(t *testing.T) {
			logs := make(chan string, 100)
			s, err := h.connectWith(h.token("tester", 10*time.Minute), &mcp.ClientOptions{
				LoggingMessageHandler: func(ctx context.Context, r *mcp.LoggingMessageRequest) { logs <- string(r.Params.Level) },
			})
			if err != nil {
				t.Fatal(err)
			}
			if s.InitializeResult().Capabilities.Logging == nil {
				t.Fatal("logging not advertised")
			}
			if err := s.SetLoggingLevel(context.Background(), &mcp.SetLoggingLevelParams{Level: "debug"}); err != nil {
				t.Fatalf("logging/setLevel: %v", err)
			}
			if _, err := s.CallTool(context.Background(), &mcp.CallToolParams{Name: "everything__toggle-simulated-logging", Arguments: map[string]any{}}); err != nil {
				t.Fatal(err)
			}
			select {
			case <-logs:
			case <-time.After(30 * time.Second):
				t.Fatal("no log message from the upstream reached the agent")
			}
		})
	}
}

// TestTaskRequiredToolRunsAsATask: the tool's execution.taskSupport
// reaches the agent, the call's task parameter reaches the server, and the
// task can be followed to its result, by its own session only.
func TestTaskRequiredToolRunsAsATask(t *testing.T) {
	t.Parallel()
	for name, h := range everythingBoth(t, "", "e2e-tasks") {
		t.Run(name, func(t *testing.T) {
			r := h.rawSession("tester", `{"tasks":{"list":{},"cancel":{}}}`)
			list, _ := r.call("tools/list", "")
			if !strings.Contains(string(list["result"]), `"execution":{"taskSupport":"required"}`) {
				t.Fatalf("tools/list lost execution.taskSupport: %.400s", list["result"])
			}
			ans, _ := r.call("tools/call", `{"name":"everything__simulate-research-query","arguments":{"topic":"bridges"},"task":{"ttl":60000}}`)
			var created struct {
				Task struct{ TaskID, Status string } `json:"task"`
			}
			json.Unmarshal(ans["result"], &created)
			if created.Task.TaskID == "" {
				t.Fatalf("no task created: %s %s", ans["error"], ans["result"])
			}
			// Another agent cannot see or fetch it.
			other := h.rawSession("tester", `{}`)
			if ans, _ := other.call("tasks/get", `{"taskId":"`+created.Task.TaskID+`"}`); !strings.Contains(string(ans["error"]), string(reason.UnknownTask)) {
				t.Errorf("another session read the task: %s %s", ans["error"], ans["result"])
			}
			deadline := time.Now().Add(60 * time.Second)
			for {
				st, _ := r.call("tasks/get", `{"taskId":"`+created.Task.TaskID+`"}`)
				if strings.Contains(string(st["result"]), `"completed"`) {
					break
				}
				if st["error"] != nil || time.Now().After(deadline) {
					t.Fatalf("task status: %s %s", st["error"], st["result"])
				}
				time.Sleep(200 * time.Millisecond)
			}
			res, _ := r.call("tasks/result", `{"taskId":"`+created.Task.TaskID+`"}`)
			if res["error"] != nil || !strings.Contains(strings.ToLower(string(res["result"])), "bridges") {
				t.Fatalf("task result: %s %.300s", res["error"], res["result"])
			}
		})
	}
}

// TestRootsOfferedOnlyToAgentsThatHaveThem: an agent that offers roots
// (and whose roots policy lets the upstream list) is offered the server's
// roots tool and its roots reach the server; an agent without roots is not.
func TestRootsOfferedOnlyToAgentsThatHaveThem(t *testing.T) {
	t.Parallel()
	h := everythingStdio(t, `
@id("everything-may-list-roots")
permit (principal == Upstream::"everything", action == Action::"list_roots", resource);`, "e2e-roots")
	c := mcp.NewClient(&mcp.Implementation{Name: "with-roots"}, nil)
	c.AddRoots(&mcp.Root{URI: "file:///srv/project", Name: "project"})
	httpc := &http.Client{Transport: bearer{token: h.token("tester", 10*time.Minute)}}
	with, err := c.Connect(context.Background(), &mcp.StreamableClientTransport{Endpoint: h.url, HTTPClient: httpc, MaxRetries: -1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer with.Close()
	without, err := h.connectWith(h.token("tester", 10*time.Minute), &mcp.ClientOptions{Capabilities: &mcp.ClientCapabilities{}})
	if err != nil {
		t.Fatal(err)
	}
	waitForTool(t, with, "everything__get-roots-list")
	res, err := with.CallTool(context.Background(), &mcp.CallToolParams{Name: "everything__get-roots-list", Arguments: map[string]any{}})
	if err != nil || !strings.Contains(text(res), "file:///srv/project") {
		t.Fatalf("roots through the gateway: %v %q", err, text(res))
	}
	if slices.Contains(toolNames(t, without), "everything__get-roots-list") {
		t.Error("an agent without roots was offered the roots tool")
	}
	if e := h.findEvent(func(e *audit.Event) bool { return e.Type == audit.TypeServer && e.Action == "list_roots" }); e == nil || e.Outcome != audit.OutcomeAllow {
		t.Errorf("roots request event = %+v", e)
	}
}

// TestSessionStateDoesNotCrossAgents: a resource one agent session creates
// on the server exists in its own session with the server, not in
// another's.
func TestSessionStateDoesNotCrossAgents(t *testing.T) {
	t.Parallel()
	for name, h := range everythingBoth(t, "", "e2e-isolation") {
		t.Run(name, func(t *testing.T) {
			a, b := h.mustConnect("tester"), h.mustConnect("tester")
			data := "data:text/plain;base64," + "aGVsbG8gd29ybGQK"
			res, err := a.CallTool(context.Background(), &mcp.CallToolParams{Name: "everything__gzip-file-as-resource", Arguments: map[string]any{"data": data, "name": "mine.txt.gz", "outputType": "resourceLink"}})
			if err != nil || res.IsError {
				t.Fatalf("create a session resource: %v %+v", err, res)
			}
			uris := func(s *mcp.ClientSession) []string {
				rl, err := s.ListResources(context.Background(), nil)
				if err != nil {
					t.Fatal(err)
				}
				var out []string
				for _, r := range rl.Resources {
					out = append(out, r.URI)
				}
				return out
			}
			mine := slices.ContainsFunc(uris(a), func(u string) bool { return strings.Contains(u, "mine.txt.gz") })
			theirs := slices.ContainsFunc(uris(b), func(u string) bool { return strings.Contains(u, "mine.txt.gz") })
			if !mine || theirs {
				t.Fatalf("session resource listed to its creator %v, to another session %v", mine, theirs)
			}
		})
	}
}

// TestSchemaViolationIsAReadableToolError: arguments that fail the tool's
// schema come back as the server would answer: an isError result naming
// the argument and the constraint.
func TestSchemaViolationIsAReadableToolError(t *testing.T) {
	t.Parallel()
	h := everythingStdio(t, "", "e2e-schema")
	s := h.mustConnect("tester")
	res, err := s.CallTool(context.Background(), &mcp.CallToolParams{Name: "everything__get-sum", Arguments: map[string]any{"a": "forty-two", "b": 1}})
	if err != nil || !res.IsError || !strings.Contains(text(res), `argument "a"`) || !strings.Contains(text(res), "number") || strings.Contains(text(res), "forty-two") {
		t.Fatalf("schema violation: %v %+v", err, res)
	}
}
