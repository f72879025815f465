package gateway

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// lockedBuffer is a bytes.Buffer a logger on another goroutine may write.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestTasksStopWaitsForEveryTask: a task that fails on its own is logged by
// name, and stop returns only when every task has returned. (The log is
// awaited before stopping: a failure at the moment the gateway stops is
// indistinguishable from one the stop caused, and is not logged.)
func TestTasksStopWaitsForEveryTask(t *testing.T) {
	var buf lockedBuffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	var finished atomic.Int32
	long := func(ctx context.Context) error {
		<-ctx.Done()
		finished.Add(1)
		return nil
	}
	ts := startTasks(log,
		task{"a", long},
		task{"b", long},
		task{"broken", func(context.Context) error { return errors.New("disk full") }},
	)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(buf.String(), "task=broken") || !strings.Contains(buf.String(), "disk full") {
		if time.Now().After(deadline) {
			t.Fatalf("the failed task was not logged: %s", buf.String())
		}
		time.Sleep(time.Millisecond)
	}
	ts.stop()
	if n := finished.Load(); n != 2 {
		t.Errorf("stop returned with %d of 2 tasks finished", n)
	}
}
