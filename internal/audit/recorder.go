package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
)

// Recorder limits.
const (
	// QueueSize bounds events waiting for the writer; beyond it Record fails.
	QueueSize = 8192
	// MaxBatch bounds events per transaction.
	MaxBatch = 512
)

// Errors returned by Record. The caller must deny the action it records.
var (
	ErrOverloaded = errors.New("audit: queue full")
	ErrClosed     = errors.New("audit: recorder stopped")
)

type pending struct {
	event *Event
	done  chan error
}

// Recorder writes events durably with group commit.
type Recorder struct {
	store LogStore
	queue chan pending
	stop  chan struct{} // closed when Run begins to stop
	done  chan struct{} // closed when Run has drained the queue
	log   *slog.Logger
	// OnWrite, if set, is called with each committed batch's size (metrics).
	OnWrite func(n int, err error)
}

// NewRecorder returns a Recorder writing to s. Run must be running for Record
// to return.
func NewRecorder(s LogStore, log *slog.Logger) *Recorder {
	return &Recorder{store: s, queue: make(chan pending, QueueSize), stop: make(chan struct{}), done: make(chan struct{}), log: log}
}

// Record writes e and returns once it is durable, or with an error.
func (r *Recorder) Record(ctx context.Context, e *Event) error {
	p := pending{event: e, done: make(chan error, 1)}
	select {
	case <-r.stop:
		return ErrClosed
	default:
	}
	select {
	case r.queue <- p:
	default:
		return ErrOverloaded
	}
	select {
	case err := <-p.done:
		return err
	case <-r.done:
		select {
		case err := <-p.done:
			return err
		default:
			return ErrClosed
		}
	case <-ctx.Done():
		// The event may still be written; the caller denies regardless.
		return fmt.Errorf("audit: %w", ctx.Err())
	}
}

// Submit queues e without waiting for it to be written. It is for events that
// do not gate an action (lifecycle, refused unauthenticated traffic); a full
// queue is an error the caller must report, never a silent drop.
func (r *Recorder) Submit(e *Event) error {
	select {
	case <-r.stop:
		return ErrClosed
	default:
	}
	select {
	case r.queue <- pending{event: e, done: make(chan error, 1)}:
		return nil
	default:
		return ErrOverloaded
	}
}

// Run is the writer loop. It drains what is queued when ctx ends, then stops.
func (r *Recorder) Run(ctx context.Context) error {
	batch := make([]pending, 0, MaxBatch)
	events := make([]*Event, 0, MaxBatch)
	for {
		select {
		case p := <-r.queue:
			batch = append(batch[:0], p)
		case <-ctx.Done():
			close(r.stop)
			r.drain()
			close(r.done)
			return nil
		}
		batch = r.fill(batch)
		events = events[:0]
		for _, p := range batch {
			events = append(events, p.event)
		}
		// The write is not tied to ctx: an accepted event is written even
		// while shutting down.
		err := Append(context.WithoutCancel(ctx), r.store, events)
		if err != nil {
			r.log.Error("audit write failed; denying the recorded actions", "events", len(events), "err", err)
		}
		if r.OnWrite != nil {
			r.OnWrite(len(events), err)
		}
		for _, p := range batch {
			p.done <- err
		}
	}
}

func (r *Recorder) fill(batch []pending) []pending {
	for len(batch) < MaxBatch {
		select {
		case p := <-r.queue:
			batch = append(batch, p)
		default:
			return batch
		}
	}
	return batch
}

func (r *Recorder) drain() {
	for {
		batch := r.fill(nil)
		if len(batch) == 0 {
			return
		}
		events := make([]*Event, len(batch))
		for i, p := range batch {
			events[i] = p.event
		}
		err := Append(context.Background(), r.store, events)
		for _, p := range batch {
			p.done <- err
		}
	}
}
