package gateway

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// task is a part of the gateway that runs in the background until its
// context ends (as SPIRE's RunTasks). Every goroutine the gateway starts
// for its lifetime is a task with an owner: a set started and stopped
// together.
type task struct {
	name string
	run  func(context.Context) error
}

// tasks is a set of tasks running until stop.
type tasks struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// startTasks runs each task in its own goroutine. A task that fails before
// it is stopped is logged; the others go on (each one degrades on its own
// terms: a recorder that cannot write makes every call fail closed).
func startTasks(log *slog.Logger, list ...task) *tasks {
	ctx, cancel := context.WithCancel(context.Background())
	ts := &tasks{cancel: cancel}
	for _, t := range list {
		ts.wg.Add(1)
		go func() {
			defer ts.wg.Done()
			if err := t.run(ctx); err != nil && ctx.Err() == nil {
				log.Error("background task stopped", "task", t.name, "err", err)
			}
		}()
	}
	return ts
}

// stop ends every task and waits until each has returned.
func (ts *tasks) stop() {
	ts.cancel()
	ts.wg.Wait()
}

// every calls fn each interval d until ctx ends (the first call after d).
func every(ctx context.Context, d time.Duration, fn func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fn()
		}
	}
}
