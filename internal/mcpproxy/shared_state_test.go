package mcpproxy

// What an upstream session several agent sessions share routes for them:
// tasks and subscriptions, bounded per agent session and per agent, their
// room taken before the relay, and one resource's subscriptions in turn.

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/reason"
	"github.com/portcullis-dev/portcullis/internal/wire"
)

// TestSharedUpstreamSessionBoundsPerSession: on an upstream session agent
// sessions share, one of them filling its share of subscriptions or tasks
// leaves the others theirs; a subscription or task that could not be
// routed is refused before it is relayed, and ended or expired tasks make
// room.
func TestSharedUpstreamSessionBoundsPerSession(t *testing.T) {
	t.Parallel()
	l := testLink(sharedKey)
	a, b, c := &Session{id: "a"}, &Session{id: "b"}, &Session{id: "c"}
	l.attach(a)
	l.attach(b)
	l.attach(c)
	for i := range maxSubscriptionsPerSession {
		uri := fmt.Sprintf("test://%d", i)
		if _, ok := l.holdSubscription(a, uri); !ok {
			t.Fatalf("subscription %d refused", i)
		}
		l.settleSubscription(a, uri, true)
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
	// While b's is pending, a's unsubscription of the same URI is not
	// relayed; b's refused, it is not recorded.
	if l.subscribedElsewhere(a, "test://more") != true {
		t.Error("a pending subscription of another session would be ended upstream")
	}
	l.settleSubscription(b, "test://more", false)
	if l.subs["test://more"] != nil || l.subCount[b] != 0 || len(l.subPending) != 0 {
		t.Errorf("a refused subscription recorded: %v, b counts %d, %d pending", l.subs["test://more"], l.subCount[b], len(l.subPending))
	}
	// Two of one session to the same URI, the first refused after the
	// second was accepted: it stays recorded.
	for range 2 {
		if had, ok := l.holdSubscription(b, "test://twice"); had || !ok {
			t.Fatalf("hold: had %v ok %v", had, ok)
		}
	}
	l.settleSubscription(b, "test://twice", true)
	l.settleSubscription(b, "test://twice", false)
	if !l.subs["test://twice"][b] || l.subCount[b] != 1 {
		t.Errorf("after an accepted and a refused subscription: held %v, b counts %d", l.subs["test://twice"][b], l.subCount[b])
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
	if l.pendingTasks() != 0 || l.taskCount[b] != 1 {
		t.Errorf("after a call without a task: %d pending, b holds %d", l.pendingTasks(), l.taskCount[b])
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

// TestTasksForgottenForRoom: on a full upstream session, room for a new
// task is made from the requester's own ended tasks first, then from
// other sessions' tasks whose result their owner had, only while the
// requester is within its share; never from a task whose result its owner
// has not had.
func TestTasksForgottenForRoom(t *testing.T) {
	t.Parallel()
	l := testLink(sharedKey)
	req, err := wire.Parse([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{},"task":{}}}`), 64)
	if err != nil {
		t.Fatal(err)
	}
	task := func(s *Session, id string) error {
		c := &call{method: "tools/call", link: l, s: s, msg: req}
		if err := c.reserveTaskRoom(); err != nil {
			return err
		}
		c.resp, _ = wire.Parse([]byte(`{"jsonrpc":"2.0","id":1,"result":{"task":{"taskId":"`+id+`","status":"working"}}}`), 64)
		c.noteTask()
		return nil
	}
	kept := func(id string) bool { _, ok := l.tasks[id]; return ok }
	victim := &Session{id: "victim"}
	l.attach(victim)
	for _, id := range []string{"victim-unfetched", "victim-fetched"} {
		if err := task(victim, id); err != nil {
			t.Fatal(err)
		}
	}
	l.taskStatus("victim-unfetched", "completed")
	l.taskEnded("victim-fetched", true)
	var fill []*Session
	for i := range 10 {
		s := &Session{id: fmt.Sprint("f", i), agent: fmt.Sprint("f", i)} // ten agents: one's share is a quarter
		l.attach(s)
		fill = append(fill, s)
		for j := 0; j < maxTasksPerSession && len(l.tasks) < maxTasksPerLink; j++ {
			if err := task(s, fmt.Sprintf("f%d-%d", i, j)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(l.tasks) != maxTasksPerLink {
		t.Fatalf("%d tasks, want the upstream session full", len(l.tasks))
	}
	asker := fill[9] // within its share
	l.taskStatus("f9-0", "completed")
	if err := task(asker, "new-1"); err != nil || kept("f9-0") || !kept("victim-fetched") {
		t.Fatalf("first new task: %v; own ended task kept %v, another's fetched task kept %v", err, kept("f9-0"), kept("victim-fetched"))
	}
	if err := task(asker, "new-2"); err != nil || kept("victim-fetched") {
		t.Fatalf("second new task: %v; another's fetched task kept %v", err, kept("victim-fetched"))
	}
	if err := task(asker, "new-3"); err == nil {
		t.Error("a task relayed when room could be made only from a result its owner has not had")
	}
	if !kept("victim-unfetched") {
		t.Error("a task whose result its owner has not had was forgotten for another session")
	}
	// At its own share, a session takes nothing from others.
	l.taskEnded("f1-0", true)
	if err := task(fill[0], "over-share"); err == nil || !kept("f1-0") {
		t.Errorf("a session at its share: %v; another's fetched task kept %v", err, kept("f1-0"))
	}
}

// TestTaskAndSubscriptionRoomThroughTheRelay: on a shared upstream
// session, a task-augmented call past the session's share is refused
// before it reaches the server, a call that creates no task gives its
// room back, and a subscription the server refuses is not recorded.
func TestTaskAndSubscriptionRoomThroughTheRelay(t *testing.T) {
	t.Parallel()
	var calls, tasks atomic.Int32
	srv := handServer(nil, "2025-11-25", `{"tools":{},"resources":{"subscribe":true},"tasks":{"requests":{"tools":{"call":{}}}}}`,
		[]string{`{"name":"make","inputSchema":{"type":"object"},"execution":{"taskSupport":"optional"}}`, `{"name":"fail","inputSchema":{"type":"object"},"execution":{"taskSupport":"optional"}}`},
		func(m *wire.Message, id string, send func(string)) {
			switch m.Method {
			case "tools/call":
				calls.Add(1)
				if name, _ := m.ParamString("name"); name == "fail" {
					send(`{"jsonrpc":"2.0","id":` + id + `,"error":{"code":-32603,"message":"no task today"}}`)
					return
				}
				n := strconv.Itoa(int(tasks.Add(1)))
				send(`{"jsonrpc":"2.0","id":` + id + `,"result":{"task":{"taskId":"t-` + n + `","status":"working","createdAt":"2026-12-02T08:00:00Z","lastUpdatedAt":"2026-12-02T08:00:00Z","ttl":600000}}}`)
			case "tasks/result":
				send(`{"jsonrpc":"2.0","id":` + id + `,"result":{"content":[{"type":"text","text":"done"}]}}`)
			case "tasks/cancel":
				tid, _ := m.ParamString("taskId")
				send(`{"jsonrpc":"2.0","id":` + id + `,"result":{"taskId":"` + tid + `","status":"cancelled","createdAt":"2026-12-02T08:00:00Z","lastUpdatedAt":"2026-12-02T08:00:00Z","ttl":600000}}`)
			case "resources/list":
				send(`{"jsonrpc":"2.0","id":` + id + `,"result":{"resources":[{"uri":"test://ok","name":"ok"},{"uri":"test://refuse","name":"refuse"}]}}`)
			case "resources/templates/list":
				send(`{"jsonrpc":"2.0","id":` + id + `,"result":{"resourceTemplates":[]}}`)
			case "resources/subscribe":
				if uri, _ := m.ParamString("uri"); uri == "test://refuse" {
					send(`{"jsonrpc":"2.0","id":` + id + `,"error":{"code":-32602,"message":"not that one"}}`)
					return
				}
				send(`{"jsonrpc":"2.0","id":` + id + `,"result":{}}`)
			}
		})
	r := pipeRig(t, config.Upstream{Name: "up", Isolation: config.IsolationShared}, srv)
	send, got := rawAgent(t, r)
	id := 1
	ask := func(method, params string) string {
		id++
		send(`{"jsonrpc":"2.0","id":` + strconv.Itoa(id) + `,"method":"` + method + `","params":` + params + `}`)
		return answerTo(t, got, id)
	}
	up := r.p.upstream("up")
	var l *link
	for _, s := range r.p.sessions.all() {
		if l = s.linkTo(up); l != nil {
			break
		}
	}
	if l == nil {
		t.Fatal("no upstream session")
	}
	counts := func() (pending, held int, subs, subPending int) {
		l.mu.Lock()
		defer l.mu.Unlock()
		for _, n := range l.taskCount {
			held += n
		}
		for _, n := range l.subCount {
			subs += n
		}
		return l.pendingTasks(), held, len(l.subs), len(l.subPending)
	}
	if a := ask("tools/call", `{"name":"up__fail","arguments":{},"task":{}}`); !strings.Contains(a, "error") {
		t.Fatalf("the failing call: %s", a)
	}
	if pending, held, _, _ := counts(); pending != 0 || held != 0 {
		t.Fatalf("after a call that created no task: %d reserved, %d counted", pending, held)
	}
	ask("resources/subscribe", `{"uri":"test://refuse"}`)
	if _, _, subs, pending := counts(); subs != 0 || pending != 0 {
		t.Fatalf("a refused subscription: %d counted, %d pending", subs, pending)
	}
	if a := ask("resources/subscribe", `{"uri":"test://ok"}`); strings.Contains(a, "error") {
		t.Fatalf("subscribe: %s", a)
	}
	var me *Session
	for s := range l.sessions {
		me = s
	}
	if _, _, subs, _ := counts(); subs != 1 || !l.subs["test://ok"][me] {
		t.Fatalf("an accepted subscription: %d counted", subs)
	}
	for i := range maxTasksPerSession {
		if a := ask("tools/call", `{"name":"up__make","arguments":{},"task":{}}`); !strings.Contains(a, `"taskId"`) {
			t.Fatalf("task %d: %s", i, a)
		}
	}
	before := calls.Load()
	a := ask("tools/call", `{"name":"up__make","arguments":{},"task":{}}`)
	if !strings.Contains(a, string(reason.UpstreamBusy)) || calls.Load() != before {
		t.Fatalf("a task past the session's share: %s; the server got %d more calls", a, calls.Load()-before)
	}
	// One ends (cancelled by its agent): the next has room.
	if a := ask("tasks/cancel", `{"taskId":"t-1"}`); !strings.Contains(a, `"cancelled"`) {
		t.Fatalf("tasks/cancel: %s", a)
	}
	if a := ask("tools/call", `{"name":"up__make","arguments":{},"task":{}}`); !strings.Contains(a, `"taskId"`) {
		t.Fatalf("a task once one had ended: %s", a)
	}
	// A result that reached the agent marks its task fetched.
	if a := ask("tasks/result", `{"taskId":"t-2"}`); !strings.Contains(a, `"done"`) {
		t.Fatalf("tasks/result: %s", a)
	}
	l.mu.Lock()
	t2 := l.tasks["t-2"]
	l.mu.Unlock()
	if !t2.ended || !t2.fetched {
		t.Errorf("after its result reached the agent: ended %v, fetched %v", t2.ended, t2.fetched)
	}
}

// TestTaskRoomAcrossADetach: a reservation taken before its session left
// the upstream session (idle expiry) and came back is settled against the
// count the session has then: counts neither drift nor leak.
func TestTaskRoomAcrossADetach(t *testing.T) {
	t.Parallel()
	l := testLink(sharedKey)
	req, err := wire.Parse([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{},"task":{}}}`), 64)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := wire.Parse([]byte(`{"jsonrpc":"2.0","id":1,"result":{"task":{"taskId":"t1","status":"working"}}}`), 64)
	if err != nil {
		t.Fatal(err)
	}
	a := &Session{id: "a"}
	l.attach(a)
	c := &call{method: "tools/call", link: l, s: a, msg: req}
	if err := c.reserveTaskRoom(); err != nil {
		t.Fatal(err)
	}
	l.detach(a)
	l.attach(a)
	c.resp = resp
	c.noteTask()
	if l.taskCount[a] != 1 || len(l.tasks) != 1 || l.pendingTasks() != 0 || len(l.taskPending) != 0 {
		t.Errorf("came back: a counts %d for %d tasks, %d pending (%d sessions)", l.taskCount[a], len(l.tasks), l.pendingTasks(), len(l.taskPending))
	}
	// Gone for good: nothing stays counted.
	b := &Session{id: "b"}
	l.attach(b)
	c = &call{method: "tools/call", link: l, s: b, msg: req, resp: resp}
	if err := c.reserveTaskRoom(); err != nil {
		t.Fatal(err)
	}
	l.detach(b)
	c.noteTask()
	if _, counted := l.taskCount[b]; counted || l.pendingTasks() != 0 || len(l.taskPending) != 0 {
		t.Errorf("left: b counts %d, %d pending", l.taskCount[b], l.pendingTasks())
	}
}

// TestSharedAcrossAgentsBoundsPerAgent: on an upstream session every
// agent shares (isolation shared), one agent's sessions together hold at
// most a quarter of what it routes, so that an agent opening many sessions
// cannot fill it for the others; on one an agent's sessions share alone,
// they may fill it.
func TestSharedAcrossAgentsBoundsPerAgent(t *testing.T) {
	t.Parallel()
	fill := func(l *link, agent string, sessions int) (subs, tasks int, last *Session) {
		for i := range sessions {
			s := &Session{id: fmt.Sprintf("%s-%d", agent, i), agent: agent}
			l.attach(s)
			last = s
			for j := range maxSubscriptionsPerSession {
				uri := fmt.Sprintf("test://%s/%d/%d", agent, i, j)
				if _, ok := l.holdSubscription(s, uri); ok {
					l.settleSubscription(s, uri, true)
					subs++
				}
			}
			for range maxTasksPerSession {
				if l.reserveTask(s, time.Now()) {
					tasks++
				}
			}
		}
		return subs, tasks, last
	}
	l := testLink(sharedKey)
	subs, tasks, x := fill(l, "x", 5)
	if subs != maxSubscriptionsPerAgent || tasks != maxTasksPerAgent {
		t.Errorf("agent x's five sessions held %d subscriptions and %d tasks (shares %d, %d)", subs, tasks, maxSubscriptionsPerAgent, maxTasksPerAgent)
	}
	y := &Session{id: "y", agent: "y"}
	l.attach(y)
	if _, ok := l.holdSubscription(y, "test://y"); !ok || !l.reserveTask(y, time.Now()) {
		t.Error("another agent refused while x held its share")
	}
	// x's share is not made of y's: a finished task of y's is not
	// forgotten for x.
	l.mu.Lock()
	l.tasks["y-1"] = taskInfo{s: y, ended: true, fetched: true}
	l.countTasks(y, 1)
	l.mu.Unlock()
	if l.reserveTask(x, time.Now()) {
		t.Error("agent x went past its share")
	}
	if _, kept := l.tasks["y-1"]; !kept {
		t.Error("another agent's task was forgotten for an agent past its share")
	}
	// What the agents hold is counted back to nothing as they leave.
	for s := range maps.Clone(l.sessions) {
		l.detach(s)
		for l.taskPending[s] > 0 {
			l.unreserveTask(s)
		}
	}
	if len(l.agentTasks) != 0 || len(l.agentSubs) != 0 {
		t.Errorf("every session gone, agents still hold tasks %v, subscriptions %v", l.agentTasks, l.agentSubs)
	}

	own := testLink("a:x")
	if subs, tasks, _ := fill(own, "x", 5); subs != 5*maxSubscriptionsPerSession || tasks != 5*maxTasksPerSession {
		t.Errorf("on an upstream session of x's alone, five sessions held %d subscriptions and %d tasks", subs, tasks)
	}

	// The agent's share full of its sessions' ended tasks: a new session
	// of the agent gets room from a task whose result was fetched, never
	// from one whose result was not.
	for _, fetched := range []bool{true, false} {
		l := testLink(sharedKey)
		for i, n := range []int{1000, 1000, 500} {
			s := &Session{id: fmt.Sprint("x", i), agent: "x"}
			l.attach(s)
			for j := range n {
				l.tasks[fmt.Sprintf("x%d-%d", i, j)] = taskInfo{s: s, seq: int64(i*1000 + j), ended: true, fetched: fetched}
				l.countTasks(s, 1)
			}
		}
		late := &Session{id: "x-late", agent: "x"}
		l.attach(late)
		_, oldestKept := l.tasks["x0-0"]
		if got := l.reserveTask(late, time.Now()); got != fetched {
			t.Errorf("results fetched %v: a new session of the agent got room %v", fetched, got)
		} else if _, kept := l.tasks["x0-0"]; fetched && kept {
			t.Error("room made, but not by forgetting the oldest fetched task")
		} else if !fetched && !(kept && oldestKept) {
			t.Error("a task whose result was not fetched was forgotten")
		}
	}
}

// TestSubscriptionsOfOneURIGoInTurn: on an upstream session two agent
// sessions share, one URI's subscriptions and unsubscriptions reach the
// server one at a time. An unsubscription waits for a subscription still
// unanswered (refused, it leaves the unsubscription as the last holder's,
// relayed; judged while it was pending, the unsubscription was dropped and
// the subscription stayed open upstream, routed to nobody); and a
// subscription waits for an unsubscription in flight, so the server never
// ends what it was just asked to start.
func TestSubscriptionsOfOneURIGoInTurn(t *testing.T) {
	t.Parallel()
	const hold = 300 * time.Millisecond
	var (
		mu                 sync.Mutex
		subs               = map[string]int{}
		unsubs             = map[string]int{}
		unsubArrived       = make(chan struct{}, 1)
		subArrived         = make(chan struct{}, 1)
		unsubAnswered      bool
		crossed, refusedAt bool
	)
	srv := handServer(nil, "2025-11-25", `{"resources":{"subscribe":true}}`, nil,
		func(m *wire.Message, id string, send func(string)) {
			uri, _ := m.ParamString("uri")
			mu.Lock()
			defer mu.Unlock()
			switch m.Method {
			case "resources/list":
				send(`{"jsonrpc":"2.0","id":` + id + `,"result":{"resources":[{"uri":"test://a","name":"a"},{"uri":"test://b","name":"b"}]}}`)
			case "resources/templates/list":
				send(`{"jsonrpc":"2.0","id":` + id + `,"result":{"resourceTemplates":[]}}`)
			case "resources/subscribe":
				subs[uri]++
				switch {
				case uri == "test://a" && subs[uri] == 2:
					// The second session's: answered (refused) once an
					// unsubscription arrives or hold has passed.
					go func() {
						select {
						case <-unsubArrived:
							mu.Lock()
							refusedAt = true // an unsubscription came while this was unanswered
							mu.Unlock()
						case <-time.After(hold):
						}
						send(`{"jsonrpc":"2.0","id":` + id + `,"error":{"code":-32603,"message":"not now"}}`)
					}()
					return
				case uri == "test://b" && subs[uri] == 2:
					crossed = !unsubAnswered
					select {
					case subArrived <- struct{}{}:
					default:
					}
				}
				send(`{"jsonrpc":"2.0","id":` + id + `,"result":{}}`)
			case "resources/unsubscribe":
				unsubs[uri]++
				if uri == "test://a" {
					select {
					case unsubArrived <- struct{}{}:
					default:
					}
					send(`{"jsonrpc":"2.0","id":` + id + `,"result":{}}`)
					return
				}
				// test://b: answered once a subscription arrives or hold
				// has passed.
				go func() {
					select {
					case <-subArrived:
					case <-time.After(hold):
					}
					mu.Lock()
					unsubAnswered = true
					mu.Unlock()
					send(`{"jsonrpc":"2.0","id":` + id + `,"result":{}}`)
				}()
			}
		})
	r := pipeRig(t, config.Upstream{Name: "up", Isolation: config.IsolationShared}, srv)
	sendA, gotA := rawAgent(t, r)
	sendB, gotB := rawAgentNamed(t, r, `{"name":"b","version":"1"}`)
	ask := func(send func(string), id int, method, uri string) {
		send(`{"jsonrpc":"2.0","id":` + strconv.Itoa(id) + `,"method":"` + method + `","params":{"uri":"` + uri + `"}}`)
	}
	count := func(m map[string]int, uri string) int {
		mu.Lock()
		defer mu.Unlock()
		return m[uri]
	}
	l := linkHolder(t, r, r.p.upstream("up")).linkTo(r.p.upstream("up"))

	// A subscribes; B's subscription is unanswered when A unsubscribes.
	ask(sendA, 10, "resources/subscribe", "test://a")
	if a := answerTo(t, gotA, 10); strings.Contains(a, "error") {
		t.Fatalf("A's subscription: %s", a)
	}
	ask(sendB, 10, "resources/subscribe", "test://a")
	waitFor(t, "B's subscription at the server", func() bool { return count(subs, "test://a") == 2 })
	ask(sendA, 11, "resources/unsubscribe", "test://a")
	if a := answerTo(t, gotB, 10); !strings.Contains(a, "error") {
		t.Fatalf("B's subscription was to be refused: %s", a)
	}
	if a := answerTo(t, gotA, 11); strings.Contains(a, "error") {
		t.Fatalf("A's unsubscription: %s", a)
	}
	if n := count(unsubs, "test://a"); n != 1 {
		t.Errorf("the server got %d unsubscriptions of test://a: its subscription stays open, routed to nobody", n)
	}
	mu.Lock()
	if refusedAt {
		t.Error("A's unsubscription reached the server while B's subscription was unanswered")
	}
	mu.Unlock()

	// A subscribes and unsubscribes; B subscribes while the server has
	// not answered the unsubscription.
	ask(sendA, 12, "resources/subscribe", "test://b")
	answerTo(t, gotA, 12)
	ask(sendA, 13, "resources/unsubscribe", "test://b")
	waitFor(t, "A's unsubscription at the server", func() bool { return count(unsubs, "test://b") == 1 })
	ask(sendB, 11, "resources/subscribe", "test://b")
	answerTo(t, gotA, 13)
	if a := answerTo(t, gotB, 11); strings.Contains(a, "error") {
		t.Fatalf("B's subscription: %s", a)
	}
	mu.Lock()
	if crossed {
		t.Error("B's subscription reached the server before it answered A's unsubscription")
	}
	mu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.subs["test://a"]) != 0 || len(l.subs["test://b"]) != 1 || len(l.subTurns) != 0 {
		t.Errorf("routing after both: test://a %d holders, test://b %d, %d turns held", len(l.subs["test://a"]), len(l.subs["test://b"]), len(l.subTurns))
	}
}

// answerTo waits for the agent's answer to its request id and returns it.
func answerTo(t *testing.T, got *lines, id int) string {
	t.Helper()
	prefix := `{"jsonrpc":"2.0","id":` + strconv.Itoa(id) + `,`
	var line string
	waitFor(t, "the answer to request "+strconv.Itoa(id), func() bool {
		for _, l := range strings.Split(got.all(), "\n") {
			if strings.HasPrefix(l, prefix) {
				line = l
				return true
			}
		}
		return false
	})
	return line
}

// TestSubscriptionTurnsInOrder: a URI's turn goes to its waiters in the
// order they came; a waiter gives up at its timeout or when its context
// ends, and leaves the queue.
func TestSubscriptionTurnsInOrder(t *testing.T) {
	t.Parallel()
	l := &link{key: sharedKey}
	ctx := context.Background()
	release, err := l.subscriptionTurn(ctx, "test://u", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	waiters := func() int {
		l.mu.Lock()
		defer l.mu.Unlock()
		return len(l.subTurns["test://u"].waiters)
	}
	if _, err := l.subscriptionTurn(ctx, "test://u", 20*time.Millisecond); !errors.Is(err, errQueueTimeout) || waiters() != 0 {
		t.Fatalf("a wait past its timeout: %v, %d left waiting", err, waiters())
	}
	cctx, cancel := context.WithCancel(ctx)
	gaveUp := make(chan error, 1)
	go func() {
		_, err := l.subscriptionTurn(cctx, "test://u", time.Minute)
		gaveUp <- err
	}()
	waitFor(t, "the waiter to queue", func() bool { return waiters() == 1 })
	cancel()
	if err := <-gaveUp; !errors.Is(err, context.Canceled) || waiters() != 0 {
		t.Fatalf("a cancelled wait: %v, %d left waiting", err, waiters())
	}
	var mu sync.Mutex
	var order []int
	var wg sync.WaitGroup
	for i := range 5 {
		wg.Go(func() {
			rel, err := l.subscriptionTurn(ctx, "test://u", time.Minute)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
			rel()
		})
		waitFor(t, "the waiter to queue", func() bool { return waiters() == i+1 })
	}
	release()
	wg.Wait()
	if !slices.Equal(order, []int{0, 1, 2, 3, 4}) {
		t.Errorf("turns taken in the order %v", order)
	}
	if len(l.subTurns) != 0 {
		t.Errorf("%d turns held after every holder released", len(l.subTurns))
	}
}

// TestSubscriptionStageLeavesSharedLinksToTheRelay: on a shared upstream
// session the relay stage records a subscription or unsubscription in the
// URI's turn; the subscription stage, after the turn, changes nothing (an
// unsubscription noted there could undo the subscription the next in turn
// made).
func TestSubscriptionStageLeavesSharedLinksToTheRelay(t *testing.T) {
	t.Parallel()
	l := &link{key: sharedKey, sessions: map[*Session]struct{}{}, subs: map[string]map[*Session]bool{}, subCount: map[*Session]int{}}
	a := &Session{id: "a", agent: "x"}
	l.attach(a)
	l.mu.Lock()
	l.subscribe(a, "test://u") // a's subscription, made after its unsubscription's turn
	l.mu.Unlock()
	msg, err := wire.Parse([]byte(`{"jsonrpc":"2.0","id":1,"method":"resources/unsubscribe","params":{"uri":"test://u"}}`), 64)
	if err != nil {
		t.Fatal(err)
	}
	resp, _ := wire.Parse([]byte(`{"jsonrpc":"2.0","id":1,"result":{}}`), 64)
	if err := noteSubscription(nil, context.Background(), &call{method: "resources/unsubscribe", link: l, s: a, msg: msg, resp: resp}); err != nil {
		t.Fatal(err)
	}
	if !l.subs["test://u"][a] || l.subCount[a] != 1 {
		t.Errorf("the subscription stage undid a later subscription: held %v, counted %d", l.subs["test://u"][a], l.subCount[a])
	}
}

// testLink is an upstream session of key with no connection, for the
// bookkeeping alone.
func testLink(key string) *link {
	return &link{key: key, sessions: map[*Session]struct{}{}, subs: map[string]map[*Session]bool{}, subCount: map[*Session]int{},
		taskCount: map[*Session]int{}, tasks: map[string]taskInfo{}}
}
