package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portcullis-dev/portcullis/internal/store"
)

// Recorder limits.
const (
	// QueueSize bounds events waiting for the writer; beyond it Record fails.
	QueueSize = 8192
	// MaxBatch bounds events per transaction.
	MaxBatch = 512
	// DatabaseTimeout bounds one batch's commit, and one flush, on a
	// database store (PostgreSQL).
	DatabaseTimeout = 10 * time.Second
)

// Errors returned by Record. The caller must deny the action it records.
var (
	ErrOverloaded = errors.New("audit: queue full")
	ErrClosed     = errors.New("audit: recorder stopped")
)

// Receipt is an event's place in the write pipeline: committed (in the
// log, readable, and surviving a crash of the process) and then durable
// (on disk, surviving a crash of the machine).
type Receipt struct {
	committed chan struct{}
	durable   chan struct{}
	commitErr error // set before committed is closed
	syncErr   error // set before durable is closed
}

func newReceipt() *Receipt {
	return &Receipt{committed: make(chan struct{}), durable: make(chan struct{})}
}

// Durable waits until the event is on disk, or ctx ends.
func (r *Receipt) Durable(ctx context.Context) error {
	select {
	case <-r.durable:
		if r.commitErr != nil {
			return r.commitErr
		}
		return r.syncErr
	case <-ctx.Done():
		return fmt.Errorf("audit: %w", ctx.Err())
	}
}

type pending struct {
	event   *Event
	receipt *Receipt // nil for Submit
	// early: the caller waits for the commit only, not for the disk.
	early bool
}

// logWriter is the store's single-writer fast path (store.LogWriter).
type logWriter interface {
	State(ctx context.Context) (store.LogState, error)
	Append(ctx context.Context, from store.LogState, rows []store.EventRow, next store.LogState) error
	Sync() error
	Durable() bool
	Close() error
}

// asyncLog is a store whose log commits may return before they reach the
// disk, and whose SyncLog makes every earlier commit durable
// (PostgreSQL: asynchronous commits, then one synchronous).
type asyncLog interface {
	AsyncLog() bool
	AppendLogAsync(ctx context.Context, build func(store.LogState) ([]store.EventRow, store.LogState, error)) error
	SyncLog(ctx context.Context) error
}

// Recorder writes events in group commits. One goroutine (Run) appends
// batches to the Merkle log; with a store that offers a LogWriter, a second
// one fsyncs the log behind it, so that committing batch n+1 overlaps with
// syncing batch n and one fsync covers every batch committed meanwhile.
type Recorder struct {
	store LogStore
	queue chan pending
	stop  chan struct{} // closed when Run begins to stop
	done  chan struct{} // closed when Run has drained the queue
	log   *slog.Logger
	// OnWrite, if set, is called with each committed batch's size (metrics).
	OnWrite func(n int, err error)
	// OnSync, if set, is called after each fsync with how many waiting
	// callers it made durable (metrics).
	OnSync func(n int, err error)
	// SyncWindow is the least time between two fsyncs of the log: commits
	// that arrive within it share the next one. Zero: every batch is
	// synced as soon as the last sync ends. Set before Run.
	SyncWindow time.Duration

	// Owned by Run.
	w     logWriter
	async asyncLog // when the store offers no logWriter but this
	// sync makes committed batches durable (w's fsync, async's flush);
	// nil when every commit is durable, or nothing is fsynced by choice.
	sync   func() error
	state  store.LogState
	loaded bool

	syncMu   sync.Mutex
	syncIdle *sync.Cond // signalled when syncing turns false
	syncing  bool
	unsynced []*Receipt
	syncKick chan struct{}
	// syncFailed is sticky: after a failed fsync the kernel may have dropped
	// the pages, and a later fsync succeeding proves nothing about them.
	syncFailed atomic.Pointer[error]
}

// NewRecorder returns a Recorder writing to s. Run must be running for Record
// to return.
func NewRecorder(s LogStore, log *slog.Logger) *Recorder {
	r := &Recorder{store: s, queue: make(chan pending, QueueSize), stop: make(chan struct{}), done: make(chan struct{}), log: log, syncKick: make(chan struct{}, 1)}
	r.syncIdle = sync.NewCond(&r.syncMu)
	return r
}

// Record writes e and returns once it is durable, or with an error.
func (r *Recorder) Record(ctx context.Context, e *Event) error {
	rc := newReceipt()
	if err := r.enqueue(pending{event: e, receipt: rc}); err != nil {
		return err
	}
	select {
	case <-rc.durable:
		if rc.commitErr != nil {
			return rc.commitErr
		}
		return rc.syncErr
	case <-r.done:
		select {
		case <-rc.durable:
			return errors.Join(rc.commitErr, rc.syncErr)
		default:
			return ErrClosed
		}
	case <-ctx.Done():
		return fmt.Errorf("audit: %w", ctx.Err())
	}
}

// Commit writes e and returns once it is committed to the log: readable,
// and kept if this process dies. The receipt tells when it is durable.
func (r *Recorder) Commit(ctx context.Context, e *Event) (*Receipt, error) {
	rc := newReceipt()
	if err := r.enqueue(pending{event: e, receipt: rc, early: true}); err != nil {
		return nil, err
	}
	select {
	case <-rc.committed:
		return rc, rc.commitErr
	case <-r.done:
		select {
		case <-rc.committed:
			return rc, rc.commitErr
		default:
			return nil, ErrClosed
		}
	case <-ctx.Done():
		// The event may still be written; the caller denies regardless.
		return nil, fmt.Errorf("audit: %w", ctx.Err())
	}
}

// Submit queues e without waiting for it to be written. It is for events that
// do not gate an action (lifecycle, refused unauthenticated traffic); a full
// queue is an error the caller must report, never a silent drop.
func (r *Recorder) Submit(e *Event) error { return r.enqueue(pending{event: e}) }

func (r *Recorder) enqueue(p pending) error {
	select {
	case <-r.stop:
		return ErrClosed
	default:
	}
	select {
	case r.queue <- p:
		return nil
	default:
		return ErrOverloaded
	}
}

// Run is the writer loop. It drains what is queued when ctx ends, then stops.
func (r *Recorder) Run(ctx context.Context) error {
	if o, ok := r.store.(interface {
		LogWriter(context.Context) (*store.LogWriter, error)
	}); ok {
		w, err := o.LogWriter(context.WithoutCancel(ctx))
		switch {
		case errors.Is(err, store.ErrNoLogWriter):
			// PostgreSQL: each batch one asynchronous commit through the
			// store, made durable by the sync loop.
			if a, ok := r.store.(asyncLog); ok && a.AsyncLog() {
				r.async = a
				r.sync = func() error {
					ctx, cancel := context.WithTimeout(context.Background(), DatabaseTimeout)
					defer cancel()
					return a.SyncLog(ctx)
				}
			}
		case err != nil:
			r.log.Error("audit log writer unavailable; writing through the store", "err", err)
		default:
			r.w = w
			defer w.Close()
			if w.Durable() {
				r.sync = w.Sync
			}
		}
	}
	syncDone := make(chan struct{})
	syncStop := make(chan struct{})
	go func() { r.syncLoop(syncStop); close(syncDone) }()
	batch := make([]pending, 0, MaxBatch)
	for {
		select {
		case p := <-r.queue:
			batch = append(batch[:0], p)
		case <-ctx.Done():
			close(r.stop)
			r.drain()
			close(syncStop)
			<-syncDone
			close(r.done)
			return nil
		}
		batch = r.fill(batch)
		if !wantsEarly(batch) {
			// Nobody gains from a commit before the sync in flight ends:
			// wait for it and commit everything that arrived meanwhile in
			// one transaction (fewer, larger commits).
			r.waitSynced()
			batch = r.fill(batch)
		}
		r.write(batch)
	}
}

func wantsEarly(batch []pending) bool {
	for _, p := range batch {
		if p.early {
			return true
		}
	}
	return false
}

// waitSynced waits until no sync is running.
func (r *Recorder) waitSynced() {
	r.syncMu.Lock()
	for r.syncing {
		r.syncIdle.Wait()
	}
	r.syncMu.Unlock()
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
		r.write(batch)
	}
}

// write commits one batch and hands its receipts to the sync loop. The
// write is not tied to Run's context: an accepted event is written even
// while shutting down.
func (r *Recorder) write(batch []pending) {
	events := make([]*Event, len(batch))
	for i, p := range batch {
		events[i] = p.event
	}
	err := r.append(events)
	if err != nil {
		r.log.Error("audit write failed; denying the recorded actions", "events", len(events), "err", err)
	}
	if r.OnWrite != nil {
		r.OnWrite(len(events), err)
	}
	needSync := err == nil && r.sync != nil
	var toSync []*Receipt
	for _, p := range batch {
		if p.receipt == nil {
			continue
		}
		p.receipt.commitErr = err
		close(p.receipt.committed)
		if needSync {
			toSync = append(toSync, p.receipt)
		} else {
			close(p.receipt.durable)
		}
	}
	if needSync {
		r.syncMu.Lock()
		r.unsynced = append(r.unsynced, toSync...)
		r.syncMu.Unlock()
		select {
		case r.syncKick <- struct{}{}:
		default:
		}
	}
}

func (r *Recorder) append(events []*Event) error {
	ctx := context.Background()
	if p := r.syncFailed.Load(); p != nil {
		return fmt.Errorf("audit log unusable after a failed sync: %w", *p)
	}
	if r.async != nil {
		// A database that does not answer in time (a lock held by a
		// gateway that died mid-batch, a lost connection) fails the batch:
		// its actions are denied rather than left waiting.
		ctx, cancel := context.WithTimeout(ctx, DatabaseTimeout)
		defer cancel()
		return r.async.AppendLogAsync(ctx, func(st store.LogState) ([]store.EventRow, store.LogState, error) {
			return buildRows(st, events)
		})
	}
	if r.w == nil {
		return Append(ctx, r.store, events) // every commit fsynced by the store
	}
	for attempt := 0; ; attempt++ {
		if !r.loaded {
			st, err := r.w.State(ctx)
			if err != nil {
				return err
			}
			r.state, r.loaded = st, true
		}
		rows, next, err := buildRows(r.state, events)
		if err != nil {
			return err
		}
		err = r.w.Append(ctx, r.state, rows, next)
		switch {
		case err == nil:
			r.state = next
			return nil
		case errors.Is(err, store.ErrLogMoved) && attempt == 0:
			r.loaded = false // another process appended: build on its state
		default:
			r.loaded = false
			return err
		}
	}
}

// syncLoop makes committed batches durable: each fsync covers every batch
// committed before it began.
func (r *Recorder) syncLoop(stop chan struct{}) {
	var last time.Time
	lastCovered := 0
	for {
		select {
		case <-r.syncKick:
		case <-stop:
			r.syncPending() // what the final drain committed
			return
		}
		// Under load (the last fsync covered several commits, or several
		// wait now), wait out the group-commit window since the last fsync
		// so that one covers more commits: an fsync costs the kernel far
		// more than the commits it covers. A lone caller syncs at once.
		r.syncMu.Lock()
		waiting := len(r.unsynced)
		r.syncMu.Unlock()
		if wait := r.SyncWindow - time.Since(last); wait > 0 && (lastCovered > 1 || waiting > 1) {
			select {
			case <-time.After(wait):
			case <-stop:
			}
		}
		lastCovered = r.syncPending()
		last = time.Now()
	}
}

// syncPending syncs what is committed and returns how many receipts it
// made durable.
func (r *Recorder) syncPending() int {
	r.syncMu.Lock()
	batch := r.unsynced
	r.unsynced = nil
	r.syncing = len(batch) > 0
	r.syncMu.Unlock()
	if len(batch) == 0 {
		return 0
	}
	err := r.sync()
	r.syncMu.Lock()
	r.syncing = false
	r.syncIdle.Broadcast()
	r.syncMu.Unlock()
	if err != nil {
		// A failed fsync of the local log poisons it (see syncFailed). A
		// database's failed flush does not: every batch re-reads the log's
		// state under its lock, so the log stays whole; the actions waiting
		// on this flush are denied.
		if r.async == nil {
			r.syncFailed.CompareAndSwap(nil, &err)
		}
		r.log.Error("audit log sync failed; denying the recorded actions", "events", len(batch), "err", err)
	}
	for _, rc := range batch {
		rc.syncErr = err
		close(rc.durable)
	}
	if r.OnSync != nil {
		r.OnSync(len(batch), err)
	}
	return len(batch)
}
