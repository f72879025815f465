package mcpproxy

import (
	"strings"
	"time"

	"github.com/portcullis-dev/portcullis/internal/reason"
	"github.com/portcullis-dev/portcullis/internal/wire"
)

// Tasks (MCP 2025-11-25) outlive the call that created them: the gateway
// remembers which agent session created each, so that only that session
// may ask about it and its status notifications reach it alone. What it
// remembers is bounded per upstream session and, on one agent sessions
// share, per agent session and, on one several agents share (isolation
// shared), per agent. A task is forgotten when its session leaves,
// when the lifetime the server gave it (ttl) has passed, or, when room is
// needed, once it has ended (completed, failed or cancelled; see
// forgetTasks). A request for a task past the bound, with nothing to forget, is
// refused before it is relayed, so that no task runs upstream that its
// agent could not reach.
const (
	maxTasksPerLink    = 10000
	maxTasksPerSession = 1000
	maxTasksPerAgent   = maxTasksPerLink / 4
)

type taskInfo struct {
	s    *Session
	tool *toolEntry
	// seq orders tasks by creation; expires is when the server forgets the
	// task (its ttl; zero: never); ended is set by a final status, fetched
	// once the agent had the task's result (tasks/result answered).
	seq     int64
	expires time.Time
	ended   bool
	fetched bool
}

// reserveTask makes room, before a task-augmented call is relayed, for
// the task it may create: false if there is none. Every true must be
// matched by recordTask or unreserveTask.
func (l *link) reserveTask(s *Session, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.taskRoom(s) {
		l.forgetTasks(s, now)
		if !l.taskRoom(s) {
			return false
		}
	}
	l.reserved(s, 1)
	return true
}

// reserved adds d to s's reservations (l.mu held). They outlive a detach
// of s: the call holding one settles it whether or not s came back.
func (l *link) reserved(s *Session, d int) {
	if l.taskPending == nil {
		l.taskPending = map[*Session]int{}
	}
	if l.taskPending[s] += d; l.taskPending[s] <= 0 {
		delete(l.taskPending, s)
	}
	l.countAgentTasks(s, d)
}

// countTasks adds d to s's recorded tasks (l.mu held).
func (l *link) countTasks(s *Session, d int) {
	if l.taskCount[s] += d; l.taskCount[s] <= 0 {
		delete(l.taskCount, s)
	}
	l.countAgentTasks(s, d)
}

// countAgentTasks adds d to what s's agent holds (l.mu held).
func (l *link) countAgentTasks(s *Session, d int) {
	if l.agentTasks == nil {
		l.agentTasks = map[string]int{}
	}
	if l.agentTasks[s.agent] += d; l.agentTasks[s.agent] <= 0 {
		delete(l.agentTasks, s.agent)
	}
}

// pendingTasks is how many tasks calls in flight may create (l.mu held).
func (l *link) pendingTasks() int {
	n := 0
	for _, r := range l.taskPending {
		n += r
	}
	return n
}

// heldTasks is what s holds of its share: its tasks and reservations
// (l.mu held).
func (l *link) heldTasks(s *Session) int { return l.taskCount[s] + l.taskPending[s] }

// taskRoom reports whether s may hold one more task on l (l.mu held).
func (l *link) taskRoom(s *Session) bool {
	if len(l.tasks)+l.pendingTasks() >= maxTasksPerLink {
		return false
	}
	return l.withinTaskShare(s)
}

// withinTaskShare reports whether s, and on a link several agents share
// its agent, may hold one more task (l.mu held).
func (l *link) withinTaskShare(s *Session) bool {
	switch {
	case l.key == "":
		return true
	case l.heldTasks(s) >= maxTasksPerSession:
		return false
	}
	return !l.acrossAgents() || l.agentTasks[s.agent] < maxTasksPerAgent
}

// forgetTasks makes room for one more task of s (l.mu held). It forgets
// the tasks past their ttl; then, one at a time until there is room, the
// oldest of s's own ended tasks (first those whose result s fetched);
// when s is within its share but its agent is not (on a link all agents
// share), the oldest task of another session of the agent whose result
// that session fetched; and, only when the upstream session as a whole is
// full while s and its agent are within their shares, the oldest task of
// another session whose result that session fetched already. A task whose
// result its owner has not had is never forgotten for another session.
func (l *link) forgetTasks(s *Session, now time.Time) {
	for id, t := range l.tasks {
		if !t.expires.IsZero() && now.After(t.expires) {
			l.dropTask(id, t)
		}
	}
	for !l.taskRoom(s) {
		withinShare := l.withinTaskShare(s)
		id, ok := l.oldestTask(func(t taskInfo) bool { return t.s == s && t.fetched })
		if !ok {
			id, ok = l.oldestTask(func(t taskInfo) bool { return t.s == s && t.ended })
		}
		if !ok && !withinShare && l.acrossAgents() && l.heldTasks(s) < maxTasksPerSession {
			// Only the agent's share is full: a task of another of its
			// sessions whose result that session fetched.
			id, ok = l.oldestTask(func(t taskInfo) bool { return t.s != s && t.s.agent == s.agent && t.fetched })
		}
		if !ok && withinShare {
			id, ok = l.oldestTask(func(t taskInfo) bool { return t.s != s && t.fetched })
		}
		if !ok {
			return
		}
		l.dropTask(id, l.tasks[id])
	}
}

// oldestTask returns the oldest task that pick accepts (l.mu held).
func (l *link) oldestTask(pick func(taskInfo) bool) (string, bool) {
	var oldest string
	var at int64
	found := false
	for id, t := range l.tasks {
		if pick(t) && (!found || t.seq < at) {
			oldest, at, found = id, t.seq, true
		}
	}
	return oldest, found
}

func (l *link) dropTask(id string, t taskInfo) {
	delete(l.tasks, id)
	l.countTasks(t.s, -1)
}

// unreserveTask gives back a reservation no task came of.
func (l *link) unreserveTask(s *Session) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reserved(s, -1)
}

// recordTask remembers the task the upstream created for c, in the room
// reserved for it (or, for a task the call did not ask for, in room
// there is): it reports whether the reservation was used.
func (l *link) recordTask(c *call, id string, ttl time.Duration, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, attached := l.sessions[c.s]; !attached {
		return false
	}
	if _, known := l.tasks[id]; known {
		return false
	}
	if c.taskReserved {
		l.reserved(c.s, -1)
	} else if !l.taskRoom(c.s) {
		return false
	}
	l.countTasks(c.s, 1)
	t := taskInfo{s: c.s, tool: c.tool, seq: l.nextID.Add(1)}
	if ttl > 0 {
		t.expires = now.Add(ttl)
	}
	l.tasks[id] = t
	return true
}

// taskStatus notes a task's status as the server reported it.
func (l *link) taskStatus(id, status string) {
	switch status {
	case "completed", "failed", "cancelled":
		l.taskEnded(id, false)
	}
}

// taskEnded notes that a task ended, and whether its agent had its result.
func (l *link) taskEnded(id string, fetched bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if t, ok := l.tasks[id]; ok {
		t.ended = true
		t.fetched = t.fetched || fetched
		l.tasks[id] = t
	}
}

// reserveTaskRoom is the relay's first step for a task-augmented
// tools/call: room for its task, or a refusal before anything is sent.
func (c *call) reserveTaskRoom() error {
	if c.method != "tools/call" || !wire.IsObject(c.msg.Raw, c.msg.Param("task")) {
		return nil
	}
	if !c.link.reserveTask(c.s, time.Now()) {
		return unavailable(reason.UpstreamBusy).withDetail("too many unfinished tasks on this upstream session")
	}
	c.taskReserved = true
	return nil
}

// noteTask records a task the upstream created for this call: only this
// agent session may ask about it. It gives back the call's reservation
// if no task came of it.
func (c *call) noteTask() {
	used := false
	defer func() {
		if c.taskReserved && !used {
			c.link.unreserveTask(c.s)
		}
		c.taskReserved = false
	}()
	if c.method != "tools/call" || c.resp == nil || c.resp.Kind != wire.Response {
		return
	}
	b := c.resp.Raw
	task := c.resp.ResultMember("task")
	if !wire.IsObject(b, task) {
		return
	}
	sp, _ := wire.Lookup(b, task, "taskId")
	id, ok := wire.String(b, sp)
	if !ok || id == "" {
		return
	}
	var ttl time.Duration
	if sp, ok := wire.Lookup(b, task, "ttl"); ok {
		if ms, ok := wire.Int(b, sp); ok && ms > 0 && ms < int64(365*24*time.Hour/time.Millisecond) {
			ttl = time.Duration(ms) * time.Millisecond
		}
	}
	used = c.link.recordTask(c, id, ttl, time.Now())
	if st, ok := wire.Lookup(b, task, "status"); ok {
		status, _ := wire.String(b, st)
		c.link.taskStatus(id, status)
	}
}

// noteTaskAnswer notes what an answer about a task says of its status:
// tasks/get and tasks/cancel return the task; tasks/result returns a
// result only once the task has ended (an error answer may be the
// server's own failure: the task is then taken to go on).
func (c *call) noteTaskAnswer() {
	if !strings.HasPrefix(c.method, "tasks/") || c.resp == nil || c.link == nil {
		return
	}
	id, ok := c.msg.ParamString("taskId")
	if !ok {
		return
	}
	switch {
	case c.method == "tasks/result" && c.resp.Kind == wire.Response:
		c.link.taskEnded(id, false)
	case (c.method == "tasks/get" || c.method == "tasks/cancel") && c.resp.Kind == wire.Response:
		status, _ := wire.String(c.resp.Raw, c.resp.ResultMember("status"))
		c.link.taskStatus(id, status)
	}
}

// noteTaskFetched notes, once the answer to tasks/result has gone to the
// agent, that the agent had the task's result.
func (c *call) noteTaskFetched() {
	if c.method != "tasks/result" || c.link == nil || c.resp == nil || c.resp.Kind != wire.Response {
		return
	}
	if id, ok := c.msg.ParamString("taskId"); ok {
		c.link.taskEnded(id, true)
	}
}
