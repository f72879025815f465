package gateway

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
)

// TestTasksStopWaitsForEveryTask: stop returns only when every task has
// returned, and a task that fails on its own is logged by name.
func TestTasksStopWaitsForEveryTask(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	var finished atomic.Int32
	failed := make(chan struct{})
	long := func(ctx context.Context) error {
		<-ctx.Done()
		finished.Add(1)
		return nil
	}
	ts := startTasks(log,
		task{"a", long},
		task{"b", long},
		task{"broken", func(context.Context) error { defer close(failed); return errors.New("disk full") }},
	)
	<-failed
	ts.stop()
	if n := finished.Load(); n != 2 {
		t.Errorf("stop returned with %d of 2 tasks finished", n)
	}
	if !strings.Contains(buf.String(), "task=broken") || !strings.Contains(buf.String(), "disk full") {
		t.Errorf("the failed task was not logged: %s", buf.String())
	}
}
