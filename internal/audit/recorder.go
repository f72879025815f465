package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/portcullis-dev/portcullis/internal/store"
)

// Appender is the store the Recorder writes to.
type Appender interface {
	AppendEvents(ctx context.Context, rows []store.EventRow) error
}

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
	row  store.EventRow
	done chan error
}

// Recorder writes events durably with group commit.
type Recorder struct {
	store Appender
	queue chan pending
	stop  chan struct{} // closed when Run begins to stop
	done  chan struct{} // closed when Run has drained the queue
	log   *slog.Logger
	// OnWrite, if set, is called with each committed batch's size (metrics).
	OnWrite func(n int, err error)
}

// NewRecorder returns a Recorder writing to s. Run must be running for Record
// to return.
func NewRecorder(s Appender, log *slog.Logger) *Recorder {
	return &Recorder{store: s, queue: make(chan pending, QueueSize), stop: make(chan struct{}), done: make(chan struct{}), log: log}
}

// Record writes e and returns once it is durable, or with an error.
func (r *Recorder) Record(ctx context.Context, e *Event) error {
	row, err := e.row()
	if err != nil {
		return err
	}
	p := pending{row: row, done: make(chan error, 1)}
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
	row, err := e.row()
	if err != nil {
		return err
	}
	select {
	case <-r.stop:
		return ErrClosed
	default:
	}
	select {
	case r.queue <- pending{row: row, done: make(chan error, 1)}:
		return nil
	default:
		return ErrOverloaded
	}
}

// Run is the writer loop. It drains what is queued when ctx ends, then stops.
func (r *Recorder) Run(ctx context.Context) error {
	batch := make([]pending, 0, MaxBatch)
	rows := make([]store.EventRow, 0, MaxBatch)
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
		rows = rows[:0]
		for _, p := range batch {
			rows = append(rows, p.row)
		}
		// The write is not tied to ctx: an accepted event is written even
		// while shutting down.
		err := r.store.AppendEvents(context.WithoutCancel(ctx), rows)
		if err != nil {
			r.log.Error("audit write failed; denying the recorded actions", "events", len(rows), "err", err)
		}
		if r.OnWrite != nil {
			r.OnWrite(len(rows), err)
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
		rows := make([]store.EventRow, len(batch))
		for i, p := range batch {
			rows[i] = p.row
		}
		err := r.store.AppendEvents(context.Background(), rows)
		for _, p := range batch {
			p.done <- err
		}
	}
}
