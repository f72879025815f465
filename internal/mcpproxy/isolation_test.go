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
	r := pipeRig(t, config.Upstream{Name: "up"}, srv)
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
	r := pipeRig(t, config.Upstream{Name: "up", Isolation: config.IsolationShared}, srv)
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
// first ended), once, and without holding the session's calls back when
// the server does not answer it.
func TestSetLevelOutlivesTheUpstreamSession(t *testing.T) {
	t.Parallel()
	seen := &lines{}
	var asked atomic.Int32
	srv := handServer(seen, "2025-11-25", `{"tools":{},"logging":{}}`, []string{"log"}, func(m *wire.Message, id string, send func(string)) {
		switch m.Method {
		case "tools/call":
			send(`{"jsonrpc":"2.0","id":` + id + `,"result":{"content":[{"type":"text","text":"ok"}]}}`)
		case "logging/setLevel":
			if asked.Add(1) != 2 { // the second upstream session's is never answered
				send(`{"jsonrpc":"2.0","id":` + id + `,"result":{}}`)
			}
		}
	})
	r := pipeRig(t, config.Upstream{Name: "up", CallTimeout: config.Duration(20 * time.Second)}, srv)
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
	s := linkHolder(t, r, up)
	s.linkTo(up).conn.Close() // the server exits
	waitFor(t, "the upstream session's end", func() bool { return s.linkTo(up) == nil })
	start := time.Now()
	send(`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"up__log","arguments":{}}}`)
	waitFor(t, "the call", func() bool { return got.has(`"id":3,`) })
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("the call waited %v for a setLevel the server does not answer", d)
	}
	waitFor(t, "setLevel asked of the new upstream session", func() bool { return setLevels() == 2 })
	// A setLevel that opens the next upstream session asks it once.
	s.linkTo(up).conn.Close()
	waitFor(t, "the upstream session's end", func() bool { return s.linkTo(up) == nil })
	send(`{"jsonrpc":"2.0","id":4,"method":"logging/setLevel","params":{"level":"warning"}}`)
	waitFor(t, "setLevel", func() bool { return got.has(`"id":4,`) && setLevels() >= 3 })
	send(`{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"up__log","arguments":{}}}`)
	waitFor(t, "the call", func() bool { return got.has(`"id":5,`) })
	if n := setLevels(); n != 3 {
		t.Errorf("setLevel reached the upstream sessions %d times, want 3 (once each)", n)
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
	r := pipeRig(t, config.Upstream{Name: "up", CallTimeout: config.Duration(300 * time.Millisecond)}, mute)
	send, got := rawAgent(t, r)
	start := time.Now()
	send(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"up__x","arguments":{}}}`)
	waitFor(t, "the answer", func() bool { return got.has(`"id":2,`) })
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("answered after %v: the list request was not bounded by the call timeout", d)
	}
}

// TestARefusedSharedClientBacksOff: a refusal of the client a shared
// upstream session is opened with keeps every session of that key from
// opening another while it holds, and none from the one that is open.
func TestARefusedSharedClientBacksOff(t *testing.T) {
	t.Parallel()
	seen := &lines{}
	srv := handServer(seen, "2025-11-25", `{"tools":{}}`, []string{"get"}, func(m *wire.Message, id string, send func(string)) {
		if m.Method == "tools/call" {
			send(`{"jsonrpc":"2.0","id":` + id + `,"result":{"content":[{"type":"text","text":"ok"}]}}`)
		}
	})
	r := pipeRig(t, config.Upstream{Name: "up", Isolation: config.IsolationShared}, srv)
	up := r.p.upstream("up")
	sendA, gotA := rawAgent(t, r)
	const rkey = "*\x002025-11-25" // the key, and the version the client speaks
	up.mu.Lock()
	up.noteRefusal(rkey, fmt.Errorf("%w: test", errClientRefused), true, time.Now())
	r0 := up.refusals[rkey]
	r0.until = time.Now().Add(time.Minute)
	up.refusals[rkey] = r0
	up.mu.Unlock()
	sendB, gotB := rawAgent(t, r)
	sendB(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"up__get","arguments":{}}}`)
	waitFor(t, "B's call", func() bool { return gotB.has(`"id":2,`) })
	if !gotB.has(`"text":"ok"`) {
		t.Fatalf("a session kept off the open shared upstream session: %s", gotB.all())
	}
	inits := strings.Count(seen.all(), `"method":"initialize"`)
	for _, s := range r.p.sessions.all() {
		if l := s.linkTo(up); l != nil {
			l.conn.Close()
			break
		}
	}
	waitFor(t, "the shared upstream session's end", func() bool { return up.openLinks() == 0 })
	sendA(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"up__get","arguments":{}}}`)
	waitFor(t, "A's call", func() bool { return gotA.has(`"id":2,`) })
	if gotA.has(`"text":"ok"`) || strings.Count(seen.all(), `"method":"initialize"`) != inits {
		t.Errorf("a shared upstream session opened while its client's refusal holds: %s", gotA.all())
	}
	// A session speaking another version is not held back by that
	// refusal; its upstream session opening clears nothing of the other.
	sendC, gotC := rawAgentInit(t, r, `{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"c","version":"1"}}`)
	waitFor(t, "C's initialize", func() bool { return gotC.has(`"id":1,`) })
	sendC(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"up__get","arguments":{}}}`)
	waitFor(t, "C's call", func() bool { return gotC.has(`"id":2,`) })
	if !gotC.has(`"text":"ok"`) {
		t.Errorf("a session whose client was never refused kept off: %s", gotC.all())
	}
}

// TestRefusalsBackOffAndReset: each refusal of a session's client doubles
// its back-off; an upstream session opened for it forgets them.
func TestRefusalsBackOffAndReset(t *testing.T) {
	t.Parallel()
	u := &Upstream{}
	const rkey = "s:a\x002025-11-25"
	refusal := fmt.Errorf("%w: test", errClientRefused)
	t0 := time.Now()
	u.noteRefusal(rkey, refusal, true, t0)
	if u.refusedClient(rkey, t0.Add(minBackoff-time.Millisecond)) == nil || u.refusedClient(rkey, t0.Add(minBackoff)) != nil {
		t.Error("the first refusal does not hold for minBackoff")
	}
	t1 := t0.Add(time.Second)
	u.noteRefusal(rkey, refusal, true, t1)
	if u.refusedClient(rkey, t1.Add(2*minBackoff-time.Millisecond)) == nil {
		t.Error("the second refusal does not hold twice as long")
	}
	u.noteRefusal(rkey, nil, false, t1)
	u.noteRefusal(rkey, refusal, true, t1)
	if u.refusedClient(rkey, t1.Add(minBackoff)) != nil {
		t.Error("an opened upstream session did not reset the back-off")
	}
}

// TestIdleExpiryKeepsWhatTheAgentWaitsFor: an upstream session idle past
// session_idle is closed, unless it holds a subscription (or a task) its
// agent session still waits for: then up to stateHold times as long.
func TestIdleExpiryKeepsWhatTheAgentWaitsFor(t *testing.T) {
	t.Parallel()
	srv := handServer(nil, "2025-11-25", `{"tools":{},"resources":{"subscribe":true}}`, []string{"get"}, func(m *wire.Message, id string, send func(string)) {
		switch m.Method {
		case "resources/list":
			send(`{"jsonrpc":"2.0","id":` + id + `,"result":{"resources":[{"uri":"test://r","name":"r"}]}}`)
		case "resources/templates/list":
			send(`{"jsonrpc":"2.0","id":` + id + `,"result":{"resourceTemplates":[]}}`)
		case "resources/subscribe", "resources/unsubscribe":
			send(`{"jsonrpc":"2.0","id":` + id + `,"result":{}}`)
		}
	})
	r := pipeRig(t, config.Upstream{Name: "up", SessionIdle: config.Duration(time.Second)}, srv)
	send, got := rawAgent(t, r)
	send(`{"jsonrpc":"2.0","id":2,"method":"resources/subscribe","params":{"uri":"test://r"}}`)
	waitFor(t, "subscribe", func() bool { return got.has(`"id":2,`) })
	up := r.p.upstream("up")
	s := linkHolder(t, r, up)
	time.Sleep(3 * time.Second) // past session_idle and a sweep
	if s.linkTo(up) == nil {
		t.Fatal("an upstream session holding the agent's subscription was closed as idle")
	}
	// Not for good: unused for stateHold times session_idle, it goes
	// (the agent session is still open, and pings).
	start := time.Now()
	for s.linkTo(up) != nil && time.Since(start) < 20*time.Second {
		send(`{"jsonrpc":"2.0","id":"p","method":"ping"}`)
		time.Sleep(200 * time.Millisecond)
	}
	if s.linkTo(up) != nil {
		t.Fatal("an upstream session holding a subscription is kept for good")
	}
}

// pipeRig is a rig whose one upstream, configured by cfg, is the stdio
// server srv (in process).

func pipeRig(t *testing.T, cfg config.Upstream, srv func(ctx context.Context, r io.ReadCloser, w io.WriteCloser) error) *rig {
	t.Helper()
	return newRigFull(t, nil, []rigUpstream{{cfg: cfg, dial: func(config.Limits) transport.Dialer {
		return func(ctx context.Context) (transport.Conn, error) { return transport.Pipe(ctx, srv, 1<<20, 64, nil) }
	}}}, nil)
}

// linkHolder returns an agent session holding an upstream session of up.

func linkHolder(t *testing.T, r *rig, up *Upstream) *Session {
	t.Helper()
	for _, s := range r.p.sessions.all() {
		if s.linkTo(up) != nil {
			return s
		}
	}
	t.Fatal("no upstream session")
	return nil
}
