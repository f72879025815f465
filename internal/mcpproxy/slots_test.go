package mcpproxy

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// waitQueued waits until s has n calls waiting.
func waitQueued(t *testing.T, s *slots, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for s.load().Queued != n {
		if time.Now().After(deadline) {
			t.Fatalf("queued %d, want %d", s.load().Queued, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// grantee acquires in the background and reports who got a slot.
type grantee struct {
	name string
	sl   *slot
	err  error
	done chan struct{}
}

func start(s *slots, agent, task string, timeout time.Duration) *grantee {
	g := &grantee{name: agent + "/" + task, done: make(chan struct{})}
	go func() {
		g.sl, _, g.err = s.acquire(context.Background(), agent, task, timeout)
		close(g.done)
	}()
	return g
}

func (g *grantee) granted() bool {
	select {
	case <-g.done:
		return g.err == nil
	default:
		return false
	}
}

func TestSlotsBurstLargerThanSlotsCompletes(t *testing.T) {
	t.Parallel()
	s := newSlots(2, 100)
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := range 40 {
		wg.Go(func() {
			sl, _, err := s.acquire(context.Background(), fmt.Sprint("agent", i%3), "", 5*time.Second)
			if err != nil {
				errs <- err
				return
			}
			if l := s.load(); l.Used > l.Capacity {
				errs <- fmt.Errorf("%d slots used of %d", l.Used, l.Capacity)
			}
			time.Sleep(2 * time.Millisecond)
			sl.release()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if l := s.load(); l.Used != 0 || l.Queued != 0 || len(s.flows) != 0 {
		t.Errorf("after the burst: %+v, %d flows", l, len(s.flows))
	}
}

func TestSlotsQueueTimeoutAndFull(t *testing.T) {
	t.Parallel()
	s := newSlots(1, 1)
	held, _, err := s.acquire(context.Background(), "a", "", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	waiting := start(s, "b", "", 100*time.Millisecond)
	waitQueued(t, s, 1)
	// The queue holds one: the next is shed at once.
	if _, waited, err := s.acquire(context.Background(), "c", "", time.Hour); !errors.Is(err, errQueueFull) || waited != 0 {
		t.Fatalf("third call: %v after %v, want an immediate errQueueFull", err, waited)
	}
	<-waiting.done
	if !errors.Is(waiting.err, errQueueTimeout) {
		t.Fatalf("queued call: %v, want errQueueTimeout", waiting.err)
	}
	if l := s.load(); l.Queued != 0 || l.Used != 1 {
		t.Fatalf("after the timeout: %+v", l)
	}
	if d := s.retryAfter(); d < 100*time.Millisecond || d > 30*time.Second {
		t.Errorf("retry hint %v", d)
	}
	held.release()
	held.release() // once only
	if l := s.load(); l.Used != 0 || len(s.flows) != 0 {
		t.Fatalf("after release: %+v, %d flows", l, len(s.flows))
	}
}

func TestSlotsCancelLeavesTheQueue(t *testing.T) {
	t.Parallel()
	s := newSlots(1, 10)
	held, _, _ := s.acquire(context.Background(), "a", "", time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		_, _, err := s.acquire(ctx, "b", "", time.Hour)
		done <- err
	}()
	waitQueued(t, s, 1)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled wait: %v", err)
	}
	if l := s.load(); l.Queued != 0 {
		t.Fatalf("the cancelled call still queued: %+v", l)
	}
	held.release()
	if l := s.load(); l.Used != 0 {
		t.Fatalf("a slot went to a cancelled call: %+v", l)
	}
}

// TestSlotsGreedyAgentCannotStarveAnother: one agent holds every slot and
// queues many more; another agent's call gets the first slot freed.
func TestSlotsGreedyAgentCannotStarveAnother(t *testing.T) {
	t.Parallel()
	s := newSlots(2, 100)
	var held []*slot
	for range 2 {
		sl, _, err := s.acquire(context.Background(), "greedy", "", time.Second)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, sl)
	}
	var greedy []*grantee
	for range 10 {
		greedy = append(greedy, start(s, "greedy", "", time.Minute))
		waitQueued(t, s, len(greedy)) // in this order
	}
	other := start(s, "other", "", time.Minute)
	waitQueued(t, s, 11)
	held[0].release()
	<-other.done
	if other.err != nil {
		t.Fatalf("the other agent's call: %v", other.err)
	}
	for _, g := range greedy {
		if g.granted() {
			t.Fatal("a queued call of the greedy agent went before the other agent's")
		}
	}
	// The greedy agent's calls are served in arrival order as slots free.
	other.sl.release()
	<-greedy[0].done
	if greedy[0].err != nil || greedy[1].granted() {
		t.Fatalf("greedy calls out of order: first %v, second granted %v", greedy[0].err, greedy[1].granted())
	}
	held[1].release()
	greedy[0].sl.release()
	for _, g := range greedy[1:] {
		<-g.done
		g.sl.release()
	}
	if l := s.load(); l.Used != 0 || l.Queued != 0 {
		t.Fatalf("after all: %+v", l)
	}
}

// TestSlotsGreedyAgentCannotFillTheQueue: with the queue full of one
// agent's calls, another agent's call takes the place of the greedy
// agent's newest, which is shed; the greedy agent cannot push back.
func TestSlotsGreedyAgentCannotFillTheQueue(t *testing.T) {
	t.Parallel()
	s := newSlots(2, 4)
	held, _, _ := s.acquire(context.Background(), "greedy", "", time.Second)
	held2, _, _ := s.acquire(context.Background(), "greedy", "", time.Second)
	var greedy []*grantee
	for range 4 {
		greedy = append(greedy, start(s, "greedy", "", time.Minute))
		waitQueued(t, s, len(greedy))
	}
	// The greedy agent finds the queue full of its own calls.
	if _, _, err := s.acquire(context.Background(), "greedy", "", time.Minute); !errors.Is(err, errQueueFull) {
		t.Fatalf("greedy agent's fifth queued call: %v", err)
	}
	other := start(s, "other", "", time.Minute)
	<-greedy[3].done
	if !errors.Is(greedy[3].err, errQueueFull) {
		t.Fatalf("the greedy agent's newest call: %v, want errQueueFull", greedy[3].err)
	}
	waitQueued(t, s, 4)
	// Nor does the greedy agent get the place back.
	if _, _, err := s.acquire(context.Background(), "greedy", "", time.Minute); !errors.Is(err, errQueueFull) {
		t.Fatalf("greedy agent's call into a full queue: %v", err)
	}
	// The greedy agent still holds a slot, the other none: the freed slot
	// goes to the other agent's call although greedy's have waited longer.
	held.release()
	<-other.done
	if other.err != nil || greedy[0].granted() {
		t.Fatalf("the other agent's call: %v; greedy's first granted first: %v", other.err, greedy[0].granted())
	}
	other.sl.release()
	held2.release()
	for _, g := range greedy[:3] {
		<-g.done
		g.sl.release()
	}
	if l := s.load(); l.Used != 0 || l.Queued != 0 || len(s.flows) != 0 {
		t.Fatalf("after all: %+v, %d flows", l, len(s.flows))
	}
}

func TestSlotsFairBetweenTasksOfOneAgent(t *testing.T) {
	t.Parallel()
	s := newSlots(2, 100)
	var held []*slot
	for range 2 {
		sl, _, _ := s.acquire(context.Background(), "a", "t1", time.Second)
		held = append(held, sl)
	}
	var t1 []*grantee
	for range 3 {
		t1 = append(t1, start(s, "a", "t1", time.Minute))
		waitQueued(t, s, len(t1))
	}
	t2 := start(s, "a", "t2", time.Minute)
	waitQueued(t, s, 4)
	// A freed slot goes to the task holding fewer (t2: none, t1: one),
	// though t1's calls came first.
	held[0].release()
	<-t2.done
	if t2.err != nil || t1[0].granted() {
		t.Fatalf("t2 %v; t1's older call granted %v", t2.err, t1[0].granted())
	}
	// Then the tasks hold one each: t1's oldest call is next.
	t2.sl.release()
	<-t1[0].done
	if t1[0].err != nil || t1[1].granted() {
		t.Fatalf("t1's calls out of order: %v, second granted %v", t1[0].err, t1[1].granted())
	}
	held[1].release()
	t1[0].sl.release()
	for _, g := range t1[1:] {
		<-g.done
		g.sl.release()
	}
	if l := s.load(); l.Used != 0 || l.Queued != 0 {
		t.Fatalf("after all: %+v", l)
	}
}

// TestSlotsStress: random holds, timeouts and cancellations never exceed
// the capacity and leave nothing behind.
func TestSlotsStress(t *testing.T) {
	t.Parallel()
	s := newSlots(3, 20)
	var wg sync.WaitGroup
	var mu sync.Mutex
	over := 0
	for i := range 200 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(i), 1))
			ctx, cancel := context.WithTimeout(context.Background(), time.Duration(r.IntN(20))*time.Millisecond)
			defer cancel()
			sl, _, err := s.acquire(ctx, fmt.Sprint("a", r.IntN(4)), fmt.Sprint("t", r.IntN(2)), time.Duration(r.IntN(10))*time.Millisecond)
			if err != nil {
				return
			}
			if l := s.load(); l.Used > l.Capacity {
				mu.Lock()
				over++
				mu.Unlock()
			}
			time.Sleep(time.Duration(r.IntN(2000)) * time.Microsecond)
			sl.release()
		})
	}
	wg.Wait()
	if over > 0 {
		t.Errorf("capacity exceeded %d times", over)
	}
	if l := s.load(); l.Used != 0 || l.Queued != 0 || len(s.flows) != 0 {
		t.Errorf("left behind: %+v, %d flows", l, len(s.flows))
	}
}

// BenchmarkSlotsFree is what every relayed call pays when a slot is free.
func BenchmarkSlotsFree(b *testing.B) {
	s := newSlots(64, 1024)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		sl, _, err := s.acquire(ctx, "agent", "", time.Second)
		if err != nil {
			b.Fatal(err)
		}
		sl.release()
	}
}
