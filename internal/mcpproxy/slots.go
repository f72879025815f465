package mcpproxy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/portcullis-dev/portcullis/internal/metrics"
	"github.com/portcullis-dev/portcullis/internal/reason"
)

// Why a call found no slot with its upstream.
var (
	errQueueFull    = errors.New("the upstream's queue is full")
	errQueueTimeout = errors.New("no slot with the upstream within the queue timeout")
)

// slots shares an upstream's concurrency between agents. A call takes a
// free slot at once when nobody waits; otherwise it waits in a bounded
// queue, up to a deadline. A freed slot goes to the waiting agent that
// holds the fewest slots, and within that agent to the task holding the
// fewest; among equals, to the one waiting longest. So an agent's burst
// queues behind itself, not in front of everyone: another agent's call
// waits for at most the next freed slot while the bursting agent holds
// more than it does. Nor can one agent fill the queue to shut others out:
// when it is full, the agent with the most calls waiting gives up its
// newest place to an agent with fewer (see pushOut).
type slots struct {
	capacity int
	maxQueue int

	mu     sync.Mutex
	used   int
	queued int
	seq    uint64
	flows  map[string]*flow // by agent; present while it holds or waits
	// hold is a moving average of how long a slot is held, for the retry
	// hint given to calls that are shed.
	hold time.Duration
}

// flow is one agent's share: the slots it holds and its calls waiting,
// by task.
type flow struct {
	held   int
	queued int
	tasks  map[string]*taskFlow
}

// taskFlow is one task's share within its agent's, its calls waiting in
// arrival order.
type taskFlow struct {
	held    int
	waiting []*waiter
}

// head is the longest-waiting call of the flow's tasks with the fewest
// slots held (nil when none waits).
func (f *flow) head() (*taskFlow, *waiter) {
	var bt *taskFlow
	for _, t := range f.tasks {
		if len(t.waiting) == 0 {
			continue
		}
		if bt == nil || t.held < bt.held || t.held == bt.held && t.waiting[0].seq < bt.waiting[0].seq {
			bt = t
		}
	}
	if bt == nil {
		return nil, nil
	}
	return bt, bt.waiting[0]
}

type waiter struct {
	agent, task string
	seq         uint64
	ready       chan struct{} // closed when granted or pushed out
	granted     bool
	pushedOut   bool // its place went to another agent's call
}

func newSlots(capacity, maxQueue int) *slots {
	return &slots{capacity: max(capacity, 1), maxQueue: max(maxQueue, 0), flows: map[string]*flow{}}
}

// slot is one held slot; release gives it back once.
type slot struct {
	s           *slots
	agent, task string
	since       time.Time
	once        sync.Once
}

func (sl *slot) release() {
	sl.once.Do(func() { sl.s.release(sl.agent, sl.task, time.Since(sl.since)) })
}

// acquire takes a slot for agent's task, waiting at most timeout. It
// returns how long the call waited. The errors are errQueueFull,
// errQueueTimeout or ctx's.
func (s *slots) acquire(ctx context.Context, agent, task string, timeout time.Duration) (*slot, time.Duration, error) {
	s.mu.Lock()
	if s.used < s.capacity && s.queued == 0 {
		s.take(agent, task)
		s.mu.Unlock()
		return &slot{s: s, agent: agent, task: task, since: time.Now()}, 0, nil
	}
	if s.queued >= s.maxQueue && !s.pushOut(agent) {
		s.mu.Unlock()
		return nil, 0, errQueueFull
	}
	s.seq++
	w := &waiter{agent: agent, task: task, seq: s.seq, ready: make(chan struct{})}
	tf := s.taskFlow(agent, task)
	tf.waiting = append(tf.waiting, w)
	s.flows[agent].queued++
	s.queued++
	s.mu.Unlock()

	start := time.Now()
	t := time.NewTimer(timeout)
	defer t.Stop()
	var err error
	select {
	case <-w.ready:
		if w.pushedOut {
			err = errQueueFull
		}
	case <-t.C:
		err = errQueueTimeout
	case <-ctx.Done():
		err = ctx.Err()
	}
	waited := time.Since(start)
	if err == nil {
		return &slot{s: s, agent: agent, task: task, since: time.Now()}, waited, nil
	}
	s.mu.Lock()
	if w.pushedOut {
		s.mu.Unlock()
		return nil, waited, err
	}
	if w.granted {
		// Granted as the wait ended: give the slot to the next in line.
		s.mu.Unlock()
		s.release(agent, task, 0)
		return nil, waited, err
	}
	tf = s.flows[agent].tasks[task]
	tf.waiting = slices.DeleteFunc(tf.waiting, func(x *waiter) bool { return x == w })
	s.flows[agent].queued--
	s.queued--
	s.forget(agent, task)
	s.mu.Unlock()
	return nil, waited, err
}

// taskFlow returns agent's task's share, creating what is missing.
func (s *slots) taskFlow(agent, task string) *taskFlow {
	f := s.flows[agent]
	if f == nil {
		f = &flow{tasks: map[string]*taskFlow{}}
		s.flows[agent] = f
	}
	t := f.tasks[task]
	if t == nil {
		t = &taskFlow{}
		f.tasks[task] = t
	}
	return t
}

// forget drops a task's share, and its agent's, once it neither holds nor
// waits.
func (s *slots) forget(agent, task string) {
	f := s.flows[agent]
	if t := f.tasks[task]; t.held == 0 && len(t.waiting) == 0 {
		delete(f.tasks, task)
	}
	if f.held == 0 && f.queued == 0 {
		delete(s.flows, agent)
	}
}

func (s *slots) take(agent, task string) {
	s.taskFlow(agent, task).held++
	s.flows[agent].held++
	s.used++
}

func (s *slots) release(agent, task string, held time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if held > 0 {
		s.hold += (held - s.hold) / 8
	}
	f := s.flows[agent]
	f.held--
	f.tasks[task].held--
	s.used--
	s.forget(agent, task)
	for s.used < s.capacity && s.queued > 0 {
		s.grantNext()
	}
}

// grantNext gives a slot to the next waiter by the fairness rule: the
// agent holding the fewest slots, then its task holding the fewest, then
// the longest waiting. The cost is in the agents and tasks waiting, not
// the calls.
func (s *slots) grantNext() {
	var bf *flow
	var bt *taskFlow
	var bw *waiter
	for _, f := range s.flows {
		if f.queued == 0 {
			continue
		}
		t, w := f.head()
		if bf == nil || f.held < bf.held || f.held == bf.held && w.seq < bw.seq {
			bf, bt, bw = f, t, w
		}
	}
	bt.waiting[0] = nil
	bt.waiting = bt.waiting[1:]
	bf.queued--
	s.queued--
	s.take(bw.agent, bw.task)
	bw.granted = true
	close(bw.ready)
}

// pushOut makes room in a full queue for a call of agent: the newest call
// of the agent with the most calls waiting gives up its place, if that
// agent has at least two more waiting than agent has. So the queue's bound
// cannot be filled by one agent to shut the others out: an agent with few
// calls waiting always finds a place. It reports whether it made room.
func (s *slots) pushOut(agent string) bool {
	var mine int
	if f := s.flows[agent]; f != nil {
		mine = f.queued
	}
	var bf *flow
	for _, f := range s.flows {
		if bf == nil || f.queued > bf.queued {
			bf = f
		}
	}
	if bf == nil || bf.queued < mine+2 {
		return false
	}
	var bt *taskFlow
	for _, t := range bf.tasks {
		if n := len(t.waiting); n > 0 && (bt == nil || t.waiting[n-1].seq > bt.waiting[len(bt.waiting)-1].seq) {
			bt = t
		}
	}
	n := len(bt.waiting)
	w := bt.waiting[n-1]
	bt.waiting[n-1] = nil
	bt.waiting = bt.waiting[:n-1]
	bf.queued--
	s.queued--
	w.pushedOut = true
	close(w.ready)
	s.forget(w.agent, w.task)
	return true
}

// byAgent is each present agent's share: slots held and calls waiting.
func (s *slots) byAgent() []metrics.AgentSlotUse {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]metrics.AgentSlotUse, 0, len(s.flows))
	for agent, f := range s.flows {
		out = append(out, metrics.AgentSlotUse{Agent: agent, InUse: f.held, Queued: f.queued})
	}
	return out
}

// load is a snapshot for metrics, readiness and retry hints.
type load struct {
	Used, Capacity, Queued, MaxQueue int
}

func (s *slots) load() load {
	s.mu.Lock()
	defer s.mu.Unlock()
	return load{Used: s.used, Capacity: s.capacity, Queued: s.queued, MaxQueue: s.maxQueue}
}

// retryAfter estimates when a shed call would find a slot: the queue ahead
// of it drained at the capacity's pace, from the average hold time.
func (s *slots) retryAfter() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.hold * time.Duration(s.queued+1) / time.Duration(s.capacity)
	return min(max(d, 100*time.Millisecond), 30*time.Second)
}

func (l load) String() string {
	return fmt.Sprintf("%d/%d calls, %d/%d queued", l.Used, l.Capacity, l.Queued, l.MaxQueue)
}

// takeSlot waits for one of u's slots for c. A call shed (the queue full,
// or no slot within the queue timeout) is refused as upstream_busy with a
// retry hint; one the agent cancelled while waiting, as cancelled.
func (u *Upstream) takeSlot(ctx context.Context, c *call) (*slot, error) {
	var agent, task string
	if c.principal != nil {
		agent, task = c.principal.Agent, c.principal.Task
	}
	sl, waited, err := u.slots.acquire(ctx, agent, task, u.queueTimeout)
	if waited > 0 {
		u.p.opts.Metrics.Queued(u.Name, agent, waited)
	}
	var why string
	switch {
	case err == nil:
		return sl, nil
	case errors.Is(err, errQueueFull):
		why = "queue_full"
	case errors.Is(err, errQueueTimeout):
		why = "queue_timeout"
	default:
		return nil, unavailable(reason.Cancelled)
	}
	u.p.opts.Metrics.Shed(u.Name, agent, why)
	r := unavailable(reason.UpstreamBusy).withDetail(fmt.Sprintf("%v after %v (%v)", err, waited.Round(time.Millisecond), u.slots.load()))
	r.retryAfter = u.slots.retryAfter()
	return nil, r
}

// SlotUse reports every upstream's slot occupancy (for metrics).
func (p *Proxy) SlotUse() []metrics.SlotUse {
	out := make([]metrics.SlotUse, 0, len(p.upstreams))
	for _, u := range p.upstreams {
		l := u.slots.load()
		out = append(out, metrics.SlotUse{Upstream: u.Name, InUse: l.Used, Capacity: l.Capacity, Queued: l.Queued, MaxQueue: l.MaxQueue, Agents: u.slots.byAgent()})
	}
	return out
}
