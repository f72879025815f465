package mcpproxy

// Upstream sessions seen from the agents that use them: one agent's
// client, log level, lists and tables do not reach or hold back the
// others'.

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/reason"
	"github.com/portcullis-dev/portcullis/internal/transport"
	"github.com/portcullis-dev/portcullis/internal/wire"
)

// TestARefusedClientDoesNotHoldOthersBack: an upstream that refuses one
// agent's client (its clientInfo) is up: the next agent session opens its
// own upstream session at once. A clientInfo that is not an MCP
// Implementation (name and version strings) is refused at the gateway.
func TestARefusedClientDoesNotHoldOthersBack(t *testing.T) {
	t.Parallel()
	seen := &lines{}
	srv := handServer(seen, "2025-11-25", `{"tools":{}}`, []string{"get"}, func(m *wire.Message, id string, send func(string)) {
		if m.Method == "tools/call" {
			send(`{"jsonrpc":"2.0","id":` + id + `,"result":{"content":[{"type":"text","text":"ok"}]}}`)
		}
	})
	r := newRigFull(t, nil, []rigUpstream{{cfg: config.Upstream{Name: "up"}, dial: func(config.Limits) transport.Dialer {
		return func(ctx context.Context) (transport.Conn, error) { return transport.Pipe(ctx, srv, 1<<20, 64, nil) }
	}}}, nil)
	up := r.p.upstream("up")
	// A raw client names itself as the server refuses.
	send, got := rawAgentNamed(t, r, `{"name":"refuse-me","version":"1"}`)
	for i := 2; i <= 4; i++ {
		send(`{"jsonrpc":"2.0","id":` + strconv.Itoa(i) + `,"method":"tools/call","params":{"name":"up__get","arguments":{}}}`)
		waitFor(t, "the refused client's call", func() bool { return got.has(`"id":` + strconv.Itoa(i) + `,`) })
	}
	if up.downUntil.Load() != 0 {
		t.Fatal("one refused client marked the upstream down for everyone")
	}
	// The refused session backs off: its calls do not start a server
	// each (the first attempt was at its initialize).
	if n := strings.Count(seen.all(), `"name":"refuse-me"`); n != 1 {
		t.Errorf("the refused client was offered to the server %d times, want once", n)
	}
	next := r.agent(nil)
	if res, err := next.CallTool(context.Background(), &mcp.CallToolParams{Name: "up__get"}); err != nil || res.IsError {
		t.Fatalf("the next session's call: %v %v", res, err)
	}
	// Each session opened is recorded, with the upstream sessions it got.
	waitFor(t, "the session's record", func() bool {
		for _, e := range r.events() {
			if e.Action == "open_session" && e.Code == reason.SessionOpened && strings.Contains(e.Detail, "upstream sessions: up") {
				return true
			}
		}
		return false
	})
	for _, info := range []string{`{"name":123,"version":"1"}`, `{"name":"a"}`, `{"name":"a","version":"1","title":7}`} {
		_, got := rawAgentNamedNoWait(t, r, info)
		waitFor(t, "the answer to "+info, func() bool { return got.has(`"id":1,`) })
		if !got.has(`"code":-32602`) || !got.has("clientInfo") {
			t.Errorf("initialize with clientInfo %s: %s", info, got.all())
		}
	}
}

// TestLogsOnASharedUpstreamSession: on an upstream session agent sessions
// share, a log message the server sends outside any request it can be
// matched to (over stdio, every one) reaches the session holding it while
// it is the only one that ever has, at or above its level; nobody once
// another has held it, even after that one left (what it started may
// still log). An agent's logging/setLevel is recorded and not relayed to
// the shared upstream session.
func TestLogsOnASharedUpstreamSession(t *testing.T) {
	t.Parallel()
	seen := &lines{}
	var n atomic.Int32
	srv := handServer(seen, "2025-11-25", `{"tools":{},"logging":{}}`, []string{"log"}, func(m *wire.Message, id string, send func(string)) {
		switch m.Method {
		case "tools/call":
			i := strconv.Itoa(int(n.Add(1)))
			send(`{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"info of call ` + i + `"}}`)
			send(`{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"error","data":"error of call ` + i + `"}}`)
			send(`{"jsonrpc":"2.0","id":` + id + `,"result":{"content":[{"type":"text","text":"ok"}]}}`)
		case "logging/setLevel":
			send(`{"jsonrpc":"2.0","id":` + id + `,"result":{}}`)
		}
	})
	r := newRigFull(t, nil, []rigUpstream{{cfg: config.Upstream{Name: "up", Isolation: config.IsolationShared}, dial: func(config.Limits) transport.Dialer {
		return func(ctx context.Context) (transport.Conn, error) { return transport.Pipe(ctx, srv, 1<<20, 64, nil) }
	}}}, nil)
	sendA, gotA := rawAgent(t, r)
	// A alone: its log messages, from its level up.
	sendA(`{"jsonrpc":"2.0","id":2,"method":"logging/setLevel","params":{"level":"error"}}`)
	waitFor(t, "setLevel", func() bool { return gotA.has(`"id":2,`) })
	sendA(`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"up__log","arguments":{}}}`)
	waitFor(t, "A's error log", func() bool { return gotA.has("error of call 1") })
	if gotA.has("info of call 1") {
		t.Error("a log message below the session's level was relayed")
	}
	if seen.has("logging/setLevel") {
		t.Error("one agent session's setLevel reached the upstream session")
	}
	recorded := false
	for _, e := range r.events() {
		recorded = recorded || e.Action == "set_log_level" && e.Outcome == audit.OutcomeAllow
	}
	if !recorded {
		t.Error("setLevel not recorded")
	}
	// B joins: nobody's.
	sendB, gotB := rawAgent(t, r)
	sendA(`{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"up__log","arguments":{}}}`)
	sendB(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"up__log","arguments":{}}}`)
	waitFor(t, "both calls", func() bool { return gotA.has(`"id":4,`) && gotB.has(`"id":2,`) })
	// B leaves: still nobody's.
	up := r.p.upstream("up")
	for _, s := range r.p.sessions.all() {
		if l := s.linkTo(up); l != nil && s.logLevel.Load() == 0 {
			up.forget(s, l)
		}
	}
	sendA(`{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"up__log","arguments":{}}}`)
	waitFor(t, "A's last call", func() bool { return gotA.has(`"id":5,`) })
	time.Sleep(100 * time.Millisecond)
	for i := 2; i <= 4; i++ {
		if c := strconv.Itoa(i); gotA.has("of call "+c) || gotB.has("of call "+c) {
			t.Fatalf("a log message of a shared upstream session reached a session:\nA: %s\nB: %s", gotA.all(), gotB.all())
		}
	}
}

// TestSetLevelOutlivesTheUpstreamSession: the log level an agent session
// set is asked of its next upstream session of its own too (after the
// first ended), not only of the one it had then.
func TestSetLevelOutlivesTheUpstreamSession(t *testing.T) {
	t.Parallel()
	seen := &lines{}
	srv := handServer(seen, "2025-11-25", `{"tools":{},"logging":{}}`, []string{"log"}, func(m *wire.Message, id string, send func(string)) {
		switch m.Method {
		case "tools/call":
			send(`{"jsonrpc":"2.0","id":` + id + `,"result":{"content":[{"type":"text","text":"ok"}]}}`)
		case "logging/setLevel":
			send(`{"jsonrpc":"2.0","id":` + id + `,"result":{}}`)
		}
	})
	r := newRigFull(t, nil, []rigUpstream{{cfg: config.Upstream{Name: "up"}, dial: func(config.Limits) transport.Dialer {
		return func(ctx context.Context) (transport.Conn, error) { return transport.Pipe(ctx, srv, 1<<20, 64, nil) }
	}}}, nil)
	send, got := rawAgent(t, r)
	send(`{"jsonrpc":"2.0","id":2,"method":"logging/setLevel","params":{"level":"warning"}}`)
	waitFor(t, "setLevel", func() bool { return got.has(`"id":2,`) })
	setLevels := func() int {
		return strings.Count(seen.all(), `"method":"logging/setLevel","params":{"level":"warning"}`)
	}
	if n := setLevels(); n != 1 {
		t.Fatalf("setLevel reached the upstream session %d times, want once", n)
	}
	up := r.p.upstream("up")
	var s *Session
	for _, o := range r.p.sessions.all() {
		if o.linkTo(up) != nil {
			s = o
		}
	}
	if s == nil {
		t.Fatal("no upstream session")
	}
	s.linkTo(up).conn.Close() // the server exits
	waitFor(t, "the upstream session's end", func() bool { return s.linkTo(up) == nil })
	send(`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"up__log","arguments":{}}}`)
	waitFor(t, "the call", func() bool { return got.has(`"id":3,`) })
	if n := setLevels(); n != 2 {
		t.Errorf("setLevel reached the upstream sessions %d times, want twice (once each)", n)
	}
}

// TestAListTheUpstreamNeverAnswersEnds: a list request the upstream never
// answers ends within its call timeout; the agent's request is answered.
func TestAListTheUpstreamNeverAnswersEnds(t *testing.T) {
	t.Parallel()
	mute := func(ctx context.Context, r io.ReadCloser, w io.WriteCloser) error {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			m, err := wire.Parse(sc.Bytes(), 64)
			if err == nil && m.Method == "initialize" {
				w.Write([]byte(`{"jsonrpc":"2.0","id":` + string(m.IDBytes()) + `,"result":{"protocolVersion":"2025-11-25","capabilities":{"tools":{}},"serverInfo":{"name":"mute","version":"1"}}}` + "\n"))
			}
		}
		return nil
	}
	r := newRigFull(t, nil, []rigUpstream{{cfg: config.Upstream{Name: "up", CallTimeout: config.Duration(300 * time.Millisecond)}, dial: func(config.Limits) transport.Dialer {
		return func(ctx context.Context) (transport.Conn, error) { return transport.Pipe(ctx, mute, 1<<20, 64, nil) }
	}}}, nil)
	send, got := rawAgent(t, r)
	start := time.Now()
	send(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"up__x","arguments":{}}}`)
	waitFor(t, "the answer", func() bool { return got.has(`"id":2,`) })
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("answered after %v: the list request was not bounded by the call timeout", d)
	}
}

// TestSharedUpstreamSessionBoundsPerSession: on an upstream session agent
// sessions share, one of them filling its share of subscriptions or tasks
// leaves the others theirs; a subscription or task that could not be
// routed is refused before it is relayed, and ended or expired tasks make
// room.
func TestSharedUpstreamSessionBoundsPerSession(t *testing.T) {
	t.Parallel()
	l := &link{key: "*", sessions: map[*Session]struct{}{}, subs: map[string]map[*Session]bool{}, subCount: map[*Session]int{},
		taskCount: map[*Session]int{}, tasks: map[string]taskInfo{}}
	a, b, c := &Session{id: "a"}, &Session{id: "b"}, &Session{id: "c"}
	l.attach(a)
	l.attach(b)
	l.attach(c)
	for i := range maxSubscriptionsPerSession {
		if _, ok := l.holdSubscription(a, fmt.Sprintf("test://%d", i)); !ok {
			t.Fatalf("subscription %d refused", i)
		}
	}
	if _, ok := l.holdSubscription(a, "test://more"); ok {
		t.Error("a subscription past the session's share would be relayed unrouted")
	}
	if had, ok := l.holdSubscription(a, "test://0"); !had || !ok {
		t.Errorf("a subscription held: had %v, ok %v", had, ok)
	}
	if _, ok := l.holdSubscription(b, "test://more"); !ok {
		t.Error("another session's subscription refused")
	}
	// Concurrent subscriptions of one session: exactly its share is held.
	var held atomic.Int32
	var wg sync.WaitGroup
	for i := range maxSubscriptionsPerSession + 50 {
		wg.Go(func() {
			if _, ok := l.holdSubscription(c, fmt.Sprintf("test://c/%d", i)); ok {
				held.Add(1)
			}
		})
	}
	wg.Wait()
	if held.Load() != maxSubscriptionsPerSession || l.subCount[c] != maxSubscriptionsPerSession {
		t.Errorf("%d concurrent subscriptions accepted, %d recorded (share %d)", held.Load(), l.subCount[c], maxSubscriptionsPerSession)
	}

	req, err := wire.Parse([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{},"task":{"ttl":60000}}}`), 64)
	if err != nil {
		t.Fatal(err)
	}
	// task relays a task-augmented call of s whose server creates task id
	// (with a ttl in ms when ttl is set): the error is the refusal before
	// the relay.
	task := func(s *Session, id, ttl string) error {
		c := &call{method: "tools/call", link: l, s: s, msg: req}
		if err := c.reserveTaskRoom(); err != nil {
			return err
		}
		resp, err := wire.Parse([]byte(`{"jsonrpc":"2.0","id":1,"result":{"task":{"taskId":"`+id+`","status":"working"`+ttl+`}}}`), 64)
		if err != nil {
			t.Fatal(err)
		}
		c.resp = resp
		c.noteTask()
		return nil
	}
	for i := range maxTasksPerSession {
		if err := task(a, fmt.Sprintf("a-%d", i), ""); err != nil {
			t.Fatalf("task %d: %v", i, err)
		}
	}
	if err := task(a, "a-more", ""); err == nil {
		t.Error("a task past the session's share, none of its tasks ended, was relayed")
	}
	if err := task(b, "b-1", `,"ttl":1000`); err != nil || l.tasks["b-1"].s != b {
		t.Errorf("another session's task: %v", err)
	}
	l.taskStatus("a-7", "completed")
	if err := task(a, "a-more", ""); err != nil {
		t.Errorf("a task once one of the session's had ended: %v", err)
	}
	if _, kept := l.tasks["a-7"]; kept || l.tasks["a-8"].s != a || l.taskCount[a] != maxTasksPerSession {
		t.Errorf("room made by forgetting the ended task: a-7 kept %v, a holds %d", kept, l.taskCount[a])
	}
	// A call that created no task gives its room back.
	none := &call{method: "tools/call", link: l, s: b, msg: req}
	if err := none.reserveTaskRoom(); err != nil {
		t.Fatal(err)
	}
	none.noteTask()
	if l.taskPending != 0 || l.taskCount[b] != 1 {
		t.Errorf("after a call without a task: %d pending, b holds %d", l.taskPending, l.taskCount[b])
	}
	// Once b-1's ttl has passed, it goes when room is next needed.
	l.mu.Lock()
	l.forgetTasks(a, time.Now().Add(2*time.Second))
	l.mu.Unlock()
	if _, kept := l.tasks["b-1"]; kept {
		t.Error("a task past its ttl is remembered")
	}
	l.detach(a)
	if l.taskCount[a] != 0 || len(l.tasks) != 0 {
		t.Errorf("after a left: %d of its tasks counted, %d tasks", l.taskCount[a], len(l.tasks))
	}
}
