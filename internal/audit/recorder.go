package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
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
	ErrSyncBehind = errors.New("audit: the disk is behind the log")
)

// DefaultMaxSyncLag is Recorder.MaxSyncLag's default.
const DefaultMaxSyncLag = 2 * time.Second

// Receipt is an event's place in the write pipeline: committed (in the
// log, readable, and surviving a crash of the process) and then durable
// (on disk, surviving a crash of the machine).
type Receipt struct {
	committed chan struct{}
	durable   chan struct{}
	commitErr error // set before committed is closed
	syncErr   error // set before durable is closed
	// rec is the recorder whose sync makes it durable, when nobody is
	// known to wait for that (LazyCommits): Durable tells it someone does.
	rec *Recorder
}

func newReceipt() *Receipt {
	return &Receipt{committed: make(chan struct{}), durable: make(chan struct{})}
}

// HeldReceipt returns the receipt of an event committed by a writer that
// wraps or stands in for a Recorder: it is durable once settle is called
// (with the sync's error, nil for success). settle is called at most once.
func HeldReceipt() (rc *Receipt, settle func(syncErr error)) {
	rc = newReceipt()
	close(rc.committed)
	return rc, func(syncErr error) {
		rc.syncErr = syncErr
		close(rc.durable)
	}
}

// Durable waits until the event is on disk, or ctx ends.
func (r *Receipt) Durable(ctx context.Context) error {
	if r.rec != nil {
		select {
		case <-r.durable:
		default:
			r.rec.hurry()
		}
	}
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
// batches to the Merkle log; a second one makes them durable behind it, so
// that committing batch n+1 overlaps with syncing batch n and one fsync
// (or flush) covers every batch committed meanwhile. A caller of Commit
// that finds nothing being written and nothing queued writes its event
// itself, under the same lock as Run (commitDirect): a lone agent's
// decision is committed without two goroutine hand-offs. With SQLite a batch is
// committed when its frame is in the journal and the events table is filled
// behind (journal.go); with PostgreSQL each batch is an asynchronous commit.
type Recorder struct {
	store LogStore
	queue chan pending
	stop  chan struct{} // closed when Run begins to stop, under stopMu
	// stopMu orders enqueueing (read) before stopping (write).
	stopMu sync.RWMutex
	done   chan struct{} // closed when Run has drained the queue
	log    *slog.Logger
	// OnWrite, if set, is called with each committed batch's size (metrics).
	OnWrite func(n int, err error)
	// OnSync, if set, is called after each fsync with how many waiting
	// callers it made durable (metrics).
	OnSync func(n int, err error)
	// SyncWindow is the least time between two fsyncs of the log: commits
	// that arrive within it share the next one. Zero: every batch is
	// synced as soon as the last sync ends. Set before Run.
	SyncWindow time.Duration
	// LazyCommits says that nobody waits for Commit's events to be on
	// disk unless it calls their receipt's Durable (audit.sync
	// background): they are synced when the oldest has waited SyncWindow,
	// not at once, so that one fsync covers a window's commits however
	// few; an event someone waits for (Record's, a Durable call) is
	// synced at once, with every other. Set before Run.
	LazyCommits bool
	// MaxSyncLag bounds how far the disk may fall behind the log: while
	// an event committed longer ago than this is not yet synced (a stalled
	// or failing disk), the log takes no events (ErrSyncBehind), so that
	// no call goes on unrecorded on disk past it, whether or not answers
	// wait for the disk. Zero: DefaultMaxSyncLag. Set before Run.
	MaxSyncLag time.Duration

	// Set by Open.
	opened  bool
	openErr error
	// SQLite: the log's durable record, when this recorder owns it (else
	// it appends through the store, and so through the owner's journal).
	j  *store.Journal
	ix *indexer // with j: fills the events table behind it

	running bool // Run has begun (Run's goroutine)
	// looping: Run's loop is serving (direct commits may be taken).
	looping atomic.Bool
	// unwritten counts events accepted into the queue and not yet
	// written (taken off the queue is not written): a direct commit
	// waits its turn behind them.
	unwritten atomic.Int64
	// directWrites counts commits written by their caller, kicks the
	// sync loop's wake-ups (tests).
	directWrites, kicks atomic.Int64
	ixStop, ixDone      chan struct{}
	catchUpReq          chan chan error // the read barrier's requests to catch up
	// broken: another process's frame could not be taken (writeMu's).
	broken error

	// writeMu is held by whoever writes the log or changes what it is
	// written to: Run's goroutine (a batch, a catch-up, a take-over) or a
	// caller writing its own commit. The fields below and j, ix, state
	// and broken are its.
	writeMu sync.Mutex
	w       journalWriter
	async   asyncLog // when the store offers no logWriter but this
	// sync makes committed batches durable (the journal's fsync, async's
	// flush); nil when every commit is durable, or nothing is fsynced by
	// choice. Set under syncMu once Run runs.
	sync  func() error
	state store.LogState

	syncMu   sync.Mutex
	syncIdle *sync.Cond // signalled when syncing turns false
	syncing  bool
	unsynced []*Receipt
	// waited (LazyCommits only): someone waits for an event in unsynced,
	// or did for one the sync in flight took (a hurry come late: the next
	// sync is then at once, an fsync spent early, nothing lost).
	waited   bool
	syncKick chan struct{}
	// Since when (UnixNano; 0: none) the first event of those being synced
	// (syncingSince) and of those queued for the next sync (unsyncedSince)
	// has waited; the former, when set, is the older. syncMu's.
	unsyncedSince, syncingSince int64
	// syncedSize is the log's size the last successful fsync covered;
	// journalSync: the fsyncs are this recorder's journal's (it owns it,
	// and store.synchronous is full); appendsThrough: another process owns
	// the journal this one appends through.
	syncedSize                  int64
	journalSync, appendsThrough bool
	// written is the log's size in the journal (r.state's, set once the
	// frame is written), read without writeMu.
	written atomic.Int64
	// syncFailed is sticky: after a failed fsync the kernel may have dropped
	// the pages, and a later fsync succeeding proves nothing about them.
	syncFailed atomic.Pointer[error]
}

// NewRecorder returns a Recorder writing to s. Run must be running for Record
// to return.
func NewRecorder(s LogStore, log *slog.Logger) *Recorder {
	r := &Recorder{store: s, queue: make(chan pending, QueueSize), stop: make(chan struct{}), done: make(chan struct{}), log: log,
		syncKick: make(chan struct{}, 1), catchUpReq: make(chan chan error)}
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
	if ctx.Err() != nil {
		return nil, fmt.Errorf("audit: %w", ctx.Err())
	}
	if rc, ok := r.commitDirect(e); ok {
		return rc, rc.commitErr
	}
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

// commitDirect writes e from the caller's goroutine when this recorder owns
// the journal, Run's loop is serving, no event accepted before is still
// unwritten (events keep the order they were accepted in) and nobody is
// writing; otherwise it returns false and the caller queues e. The write
// and what follows it (the receipt handed to the sync loop) are Run's own
// code, under the same lock; a stopped recorder takes nothing (Run's drain
// follows any write in progress). Like Run's, the write may wait for
// another process's append lock (store.JournalAppendWait); the caller's
// context is looked at before, not during it.
func (r *Recorder) commitDirect(e *Event) (*Receipt, bool) {
	if !r.looping.Load() || r.unwritten.Load() > 0 || !r.writeMu.TryLock() {
		return nil, false
	}
	defer r.writeMu.Unlock()
	select {
	case <-r.stop:
		return nil, false
	default:
	}
	if r.j == nil || r.unwritten.Load() > 0 {
		return nil, false
	}
	// A panic while writing leaves the log's state unknown: the process
	// stops, as it does when Run's goroutine panics, rather than being
	// recovered by the caller's (a request handler's) and writing on.
	defer func() {
		if p := recover(); p != nil {
			go panic(fmt.Sprintf("audit: writing the log: %v\n%s", p, debug.Stack()))
			select {}
		}
	}()
	rc := newReceipt()
	r.write([]pending{{event: e, receipt: rc, early: true}})
	r.directWrites.Add(1)
	return rc, true
}

func (r *Recorder) enqueue(p pending) error {
	// Under stopMu: an event is either queued before Run stops (and so
	// drained) or refused, never queued after the drain and lost.
	r.stopMu.RLock()
	defer r.stopMu.RUnlock()
	select {
	case <-r.stop:
		return ErrClosed
	default:
	}
	r.unwritten.Add(1) // before it can be taken off the queue
	select {
	case r.queue <- p:
		return nil
	default:
		r.unwritten.Add(-1)
		return ErrOverloaded
	}
}

// Open prepares the writer: the store's single-writer path, and with
// SQLite its journal, recovering what a previous run left in it. Run calls
// it if the caller did not; calling it first reports at start a journal
// another process holds or cannot recover (every event would otherwise be
// refused). Not safe for concurrent use with Run.
func (r *Recorder) Open(ctx context.Context) error {
	if r.opened {
		return r.openErr
	}
	r.opened = true
	r.openErr = r.open(ctx)
	return r.openErr
}

func (r *Recorder) open(ctx context.Context) error {
	ctx = context.WithoutCancel(ctx) // recovery runs to its end
	o, ok := r.store.(interface {
		LogWriter(context.Context) (*store.LogWriter, error)
	})
	if !ok {
		return nil
	}
	w, err := o.LogWriter(ctx)
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
		return nil
	case err != nil:
		r.log.Error("audit log writer unavailable; writing through the store", "err", err)
		return nil
	}
	j, st, err := openJournal(ctx, w, r.log)
	switch {
	case errors.Is(err, store.ErrJournalLocked):
		// Another process (a gateway on the same data directory) owns the
		// journal: this one appends through it, each batch synced, and
		// takes it over when that one stops.
		r.w = w
		r.syncMu.Lock()
		r.appendsThrough = true
		r.syncMu.Unlock()
		r.log.Info("audit journal owned by another process on this data directory: appending through it")
		return nil
	case err != nil:
		w.Close()
		return err
	}
	r.w = w
	r.own(j, st)
	return nil
}

// own makes this recorder the journal's owner, the table's one writer.
// Run's goroutine with writeMu held (or Open, before Run).
func (r *Recorder) own(j *store.Journal, st store.LogState) {
	r.j = j
	r.advance(st)
	r.ix = newIndexer(r.w, j, st, r.log)
	r.ix.catchUp = r.catchUpNow
	r.syncMu.Lock()
	r.appendsThrough = false
	if r.w.Durable() {
		r.sync, r.journalSync = j.Sync, true
		// Recovery made what the journal held durable in the table.
		r.syncedSize = max(r.syncedSize, st.Size)
	}
	r.syncMu.Unlock()
	r.w.SetReadBarrier(r.ix.barrier)
	if db, ok := r.store.(*store.DB); ok {
		journaled.Store(db, r)
	}
	if r.running {
		r.startIndexer()
	}
}

// startIndexer starts the indexer's goroutine (Run's).
func (r *Recorder) startIndexer() {
	r.ixStop, r.ixDone = make(chan struct{}), make(chan struct{})
	go func() { r.ix.run(r.ixStop); close(r.ixDone) }()
}

// tryOwn takes the journal over if its owner stopped (Run's goroutine,
// every CatchUpInterval while this recorder appends through another's).
func (r *Recorder) tryOwn() {
	j, st, err := openJournal(context.Background(), r.w, r.log)
	switch {
	case errors.Is(err, store.ErrJournalLocked):
	case err != nil:
		r.log.Error("audit journal: taking it over", "err", err)
	default:
		r.log.Info("audit journal: taken over from the process that owned it", "size", st.Size)
		r.own(j, st)
	}
}

// Run is the writer loop. It drains what is queued when ctx ends, then stops.
func (r *Recorder) Run(ctx context.Context) error {
	if err := r.Open(ctx); err != nil {
		r.log.Error("audit log unavailable; every recorded action is denied", "err", err)
	}
	r.running = true
	if r.ix != nil {
		r.startIndexer()
	}
	if r.w != nil {
		defer func() {
			if r.ix != nil {
				// After the drain and the last sync: the table gets every
				// event, then the journal is emptied.
				close(r.ixStop)
				<-r.ixDone
				if db, ok := r.store.(*store.DB); ok {
					journaled.CompareAndDelete(db, r)
				}
				r.w.SetReadBarrier(nil)
				r.j.Close()
			}
			r.w.Close()
		}()
	}
	syncDone := make(chan struct{})
	syncStop := make(chan struct{})
	go func() { r.syncLoop(syncStop); close(syncDone) }()
	var catchUp <-chan time.Time
	if r.w != nil && r.openErr == nil {
		t := time.NewTicker(CatchUpInterval)
		defer t.Stop()
		catchUp = t.C
	}
	batch := make([]pending, 0, MaxBatch)
	r.looping.Store(true)
	for {
		select {
		case p := <-r.queue:
			batch = append(batch[:0], p)
		case <-catchUp:
			r.writeMu.Lock()
			if r.j != nil {
				r.catchUp() // failures are logged; the read barrier reports them
			} else {
				r.tryOwn()
			}
			r.writeMu.Unlock()
			continue
		case done := <-r.catchUpReq:
			var err error
			r.writeMu.Lock()
			if r.j != nil {
				err = r.catchUp()
			}
			r.writeMu.Unlock()
			done <- err
			continue
		case <-ctx.Done():
			r.stopMu.Lock()
			close(r.stop)
			r.stopMu.Unlock()
			r.writeMu.Lock() // after any direct commit in progress
			r.drain()
			r.writeMu.Unlock()
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
		r.writeMu.Lock()
		r.write(batch)
		r.unwritten.Add(-int64(len(batch)))
		r.writeMu.Unlock()
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
		r.unwritten.Add(-int64(len(batch)))
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
	waited := false
	for _, p := range batch {
		if p.receipt == nil {
			continue
		}
		p.receipt.commitErr = err
		if needSync {
			if r.LazyCommits && p.early {
				p.receipt.rec = r // before committed: the committer reads it
			} else {
				waited = r.LazyCommits // only lazy mode tells the two apart
			}
			toSync = append(toSync, p.receipt)
		}
	}
	first := false
	if needSync {
		r.syncMu.Lock()
		first = len(r.unsynced) == 0
		if len(toSync) > 0 && r.unsyncedSince == 0 {
			r.unsyncedSince = time.Now().UnixNano()
		}
		r.unsynced = append(r.unsynced, toSync...)
		r.waited = r.waited || waited
		r.syncMu.Unlock()
	}
	// Committed only once the sync loop holds them: a Durable called as
	// soon as Commit returns finds its receipt in unsynced, so that the
	// waited flag hurry sets is for a sync that takes it.
	for _, p := range batch {
		if p.receipt == nil {
			continue
		}
		close(p.receipt.committed)
		if !needSync {
			close(p.receipt.durable)
		}
	}
	// Commits behind an unsynced one change nothing the sync loop has
	// not been told (its next sync takes them all, when its timer runs
	// out: for the oldest with lazy commits, else the window since the
	// last sync), unless someone waits for lazy ones (the timer must be
	// cut short): no wake-up per call under load.
	if needSync && (first || waited) {
		r.kick()
	}
}

func (r *Recorder) append(events []*Event) error {
	ctx := context.Background()
	if p := r.syncFailed.Load(); p != nil {
		return fmt.Errorf("audit log unusable after a failed sync: %w", *p)
	}
	if lag := r.syncLag(); lag > r.maxSyncLag() {
		return fmt.Errorf("%w: an event committed %v ago is not yet synced", ErrSyncBehind, lag.Round(time.Millisecond))
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
	if r.openErr != nil {
		return fmt.Errorf("audit log unavailable: %w", r.openErr)
	}
	if r.j == nil {
		return Append(ctx, r.store, events) // every commit fsynced by the store
	}
	if r.broken != nil {
		return fmt.Errorf("audit log unusable: %w", r.broken)
	}
	if err := r.ix.room(len(events)); err != nil {
		return err
	}
	var fr store.JournalFrame
	err := r.j.Append(func(foreign []store.JournalFrame) ([]store.EventRow, store.LogState, error) {
		if err := r.apply(foreign); err != nil {
			return nil, store.LogState{}, err
		}
		rows, next, err := buildRows(r.state, events)
		fr = store.JournalFrame{Rows: rows, Next: next}
		return rows, next, err
	})
	if err != nil {
		return err
	}
	r.advance(fr.Next)
	r.ix.add(fr)
	return nil
}

// advance sets the log's state after a frame written (or taken from
// another process) to st. writeMu held.
func (r *Recorder) advance(st store.LogState) {
	r.state = st
	r.written.Store(st.Size)
}
