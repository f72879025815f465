package mcpproxy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/portcullis-dev/portcullis/internal/metrics"
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
// more than it does.
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

// flow is one agent's share: the slots it holds (by task) and its calls
// waiting, in arrival order.
type flow struct {
	held    int
	tasks   map[string]int
	waiting []*waiter
}

type waiter struct {
	agent, task string
	seq         uint64
	ready       chan struct{} // closed when granted
	granted     bool
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
	if s.queued >= s.maxQueue {
		s.mu.Unlock()
		return nil, 0, errQueueFull
	}
	s.seq++
	w := &waiter{agent: agent, task: task, seq: s.seq, ready: make(chan struct{})}
	f := s.flow(agent)
	f.waiting = append(f.waiting, w)
	s.queued++
	s.mu.Unlock()

	start := time.Now()
	t := time.NewTimer(timeout)
	defer t.Stop()
	var err error
	select {
	case <-w.ready:
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
	if w.granted {
		// Granted as the wait ended: give the slot to the next in line.
		s.mu.Unlock()
		s.release(agent, task, 0)
		return nil, waited, err
	}
	f = s.flows[agent]
	f.waiting = slices.DeleteFunc(f.waiting, func(x *waiter) bool { return x == w })
	s.queued--
	s.forget(agent, f)
	s.mu.Unlock()
	return nil, waited, err
}

func (s *slots) flow(agent string) *flow {
	f := s.flows[agent]
	if f == nil {
		f = &flow{tasks: map[string]int{}}
		s.flows[agent] = f
	}
	return f
}

// forget drops an agent's flow once it neither holds nor waits.
func (s *slots) forget(agent string, f *flow) {
	if f.held == 0 && len(f.waiting) == 0 {
		delete(s.flows, agent)
	}
}

func (s *slots) take(agent, task string) {
	f := s.flow(agent)
	f.held++
	f.tasks[task]++
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
	if f.tasks[task]--; f.tasks[task] == 0 {
		delete(f.tasks, task)
	}
	s.used--
	s.forget(agent, f)
	for s.used < s.capacity && s.queued > 0 {
		s.grantNext()
	}
}

// grantNext gives a slot to the next waiter by the fairness rule.
func (s *slots) grantNext() {
	var best *flow
	for _, f := range s.flows {
		if len(f.waiting) == 0 {
			continue
		}
		if best == nil || f.held < best.held || f.held == best.held && f.waiting[0].seq < best.waiting[0].seq {
			best = f
		}
	}
	i := 0
	for j, w := range best.waiting {
		if best.tasks[w.task] < best.tasks[best.waiting[i].task] {
			i = j
		}
	}
	w := best.waiting[i]
	best.waiting = slices.Delete(best.waiting, i, i+1)
	s.queued--
	s.take(w.agent, w.task)
	w.granted = true
	close(w.ready)
}

// byAgent is each present agent's share: slots held and calls waiting.
func (s *slots) byAgent() []metrics.AgentSlotUse {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]metrics.AgentSlotUse, 0, len(s.flows))
	for agent, f := range s.flows {
		out = append(out, metrics.AgentSlotUse{Agent: agent, InUse: f.held, Queued: len(f.waiting)})
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
	var reason string
	switch {
	case err == nil:
		return sl, nil
	case errors.Is(err, errQueueFull):
		reason = "queue_full"
	case errors.Is(err, errQueueTimeout):
		reason = "queue_timeout"
	default:
		return nil, unavailable(ReasonCancelled)
	}
	u.p.opts.Metrics.Shed(u.Name, agent, reason)
	r := unavailable(ReasonUpstreamBusy).withDetail(fmt.Sprintf("%v after %v (%v)", err, waited.Round(time.Millisecond), u.slots.load()))
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
