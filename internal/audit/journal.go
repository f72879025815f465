package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/portcullis-dev/portcullis/internal/store"
)

// Journal mode (SQLite). The recorder's durable record is the store's
// append-only journal (store.Journal): a batch is committed when its frame
// is written, durable when the journal is fsynced. The events table is
// filled from the committed frames behind, in large transactions, by the
// indexer; every read of the log through the store waits until the table
// holds what was committed before the read began (the store's read
// barrier), so readers in this process never see less than the writer
// acknowledged; a reader in another process waits until the table reaches
// the journal's end (DB.caughtUp).
const (
	// IndexDelay is the longest a committed event waits for the table
	// when nothing reads the log.
	IndexDelay = 200 * time.Millisecond
	// IndexBatch is the most rows put in the table in one transaction.
	IndexBatch = 4096
	// MaxUnindexed bounds rows committed but not yet in the table: past
	// it (the table cannot be written), new events are refused and the
	// actions they record denied.
	MaxUnindexed = 1 << 16
	// indexRetry is the pause after a failed index transaction.
	indexRetry = time.Second
	// CatchUpInterval is how often an idle writer reads frames another
	// process (the CLI) appended to its journal.
	CatchUpInterval = 100 * time.Millisecond
)

// journaled maps a store to the recorder that owns its journal in this
// process: Append on that store goes through the recorder, so that the
// table has one writer.
var journaled sync.Map // *store.DB -> *Recorder

// ownerOf returns the recorder in this process that owns s's journal.
func ownerOf(s LogStore) (*Recorder, bool) {
	db, ok := s.(*store.DB)
	if !ok {
		return nil, false
	}
	r, ok := journaled.Load(db)
	if !ok {
		return nil, false
	}
	return r.(*Recorder), true
}

// apply takes frames another process appended: each must continue the
// log, and goes to the indexer. One that does not stops the recorder
// (every later event is refused): nothing may be built on it, nor may it
// be dropped.
func (r *Recorder) apply(foreign []store.JournalFrame) error {
	for _, fr := range foreign {
		var err error
		if fr.Rows[0].Seq != r.state.Size+1 {
			err = fmt.Errorf("audit journal: another process's frame of events %d-%d does not continue the log of %d", fr.Rows[0].Seq, fr.Next.Size, r.state.Size)
		} else {
			err = continues(r.state, fr)
		}
		if err != nil {
			r.broken = err
			r.log.Error("audit journal: another process's events cannot be taken; refusing every event until restart", "err", err)
			return err
		}
		r.advance(fr.Next)
		r.ix.add(fr)
	}
	return nil
}

// catchUp reads what other processes appended to the journal (apply).
// Failing to read (the append lock held too long) is tried again at the
// next catch-up or frame, and returned: a reader waiting on it must not
// go on as if there were nothing to read. Nor after frames that could not
// be taken (a broken journal): the log lacks events the journal holds.
func (r *Recorder) catchUp() error {
	if r.broken != nil {
		return fmt.Errorf("audit log unusable: %w", r.broken)
	}
	foreign, err := r.j.CatchUp()
	if err != nil {
		r.log.Error("audit journal: reading other processes' events", "err", err)
		return err
	}
	return r.apply(foreign)
}

// catchUpNow has Run's goroutine read other processes' frames, for a
// reader in this process (the read barrier); it returns at once if Run is
// not running.
func (r *Recorder) catchUpNow(ctx context.Context) error {
	done := make(chan error, 1)
	select {
	case r.catchUpReq <- done:
	case <-r.stop:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("audit log: %w", ctx.Err())
	}
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("audit log: reading other processes' events: %w", err)
		}
		return nil
	case <-r.stop:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("audit log: %w", ctx.Err())
	}
}

// journalWriter is the store's writer when it keeps a journal: the table's
// single writer (store.LogWriter) and the journal in front of it.
type journalWriter interface {
	logWriter
	OpenJournal(ctx context.Context, wait time.Duration) (*store.Journal, store.LogState, int, error)
	SetReadBarrier(func(context.Context) error)
}

// openJournal takes w's journal if no other process owns it, puts in the table every event it holds
// that the table lacks (a previous run that stopped before indexing them,
// each checked against the tree), and empties it. It returns the journal
// and the log's state.
func openJournal(ctx context.Context, w journalWriter, log *slog.Logger) (*store.Journal, store.LogState, error) {
	j, st, n, err := w.OpenJournal(ctx, 0)
	if err != nil {
		return nil, store.LogState{}, err
	}
	if n > 0 {
		log.Info("audit journal: events recovered into the log", "events", n, "size", st.Size)
	}
	return j, st, nil
}

// Every recovery of a journal, in any process that writes events, checks
// each frame it takes against the tree.
func init() { store.CheckJournalWith(continues) }

// continues checks that fr extends the log at st: every leaf hash is its
// body's, and appending them gives fr's state.
func continues(st store.LogState, fr store.JournalFrame) error {
	r, err := decodeRange(st)
	if err != nil {
		return err
	}
	for _, row := range fr.Rows {
		if !bytes.Equal(hasher.HashLeaf(row.Body), row.LeafHash) {
			return fmt.Errorf("audit journal: event %d: leaf hash does not match its body", row.Seq)
		}
		if err := r.Append(row.LeafHash, nil); err != nil {
			return err
		}
	}
	if !bytes.Equal(encodeRange(r), fr.Next.Range) {
		return fmt.Errorf("audit journal: events %d-%d do not give the tree the frame records", fr.Rows[0].Seq, fr.Next.Size)
	}
	return nil
}

// indexer puts committed frames in the events table.
type indexer struct {
	w   journalWriter
	j   *store.Journal
	log *slog.Logger

	mu        sync.Mutex
	frames    []store.JournalFrame // committed, not yet in the table
	rows      int                  // in frames
	since     time.Time            // when frames stopped being empty
	table     store.LogState       // the table's state: frames[0] continues it
	committed int64                // the journal's size
	err       error                // the last attempt's error
	urgent    bool                 // a reader waits
	stopped   bool
	progress  chan struct{} // closed (and replaced) after every attempt
	kick      chan struct{}
	// catchUp has the writer read other processes' frames (set by the
	// recorder before the barrier is installed).
	catchUp func(context.Context) error
}

func newIndexer(w journalWriter, j *store.Journal, st store.LogState, log *slog.Logger) *indexer {
	return &indexer{w: w, j: j, log: log, table: st, committed: st.Size, progress: make(chan struct{}), kick: make(chan struct{}, 1)}
}

// room fails when n more rows would put the table too far behind the
// journal.
func (x *indexer) room(n int) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.rows+n > MaxUnindexed {
		return fmt.Errorf("audit log: %d events wait for the table (last error: %v)", x.rows, x.err)
	}
	return nil
}

// add hands a committed frame to the indexer.
func (x *indexer) add(fr store.JournalFrame) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if len(x.frames) == 0 {
		x.since = time.Now()
	}
	x.frames = append(x.frames, fr)
	x.rows += len(fr.Rows)
	x.committed = fr.Next.Size
	if len(x.frames) == 1 || x.rows >= IndexBatch {
		x.signal() // starts the delay; or a batch is full
	}
}

func (x *indexer) signal() {
	select {
	case x.kick <- struct{}{}:
	default:
	}
}

// barrier waits until the table holds every event committed when it was
// called, by this process or (read first) another (the store's read
// barrier).
func (x *indexer) barrier(ctx context.Context) error {
	if x.catchUp != nil {
		if err := x.catchUp(ctx); err != nil {
			return err
		}
	}
	x.mu.Lock()
	target := x.committed
	for x.table.Size < target && !x.stopped {
		x.urgent = true
		ch := x.progress
		x.mu.Unlock()
		x.signal()
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("audit log: waiting for the table: %w", ctx.Err())
		}
		x.mu.Lock()
		if x.err != nil && x.table.Size < target {
			err := x.err
			x.mu.Unlock()
			return fmt.Errorf("audit log: the table is behind the journal: %w", err)
		}
	}
	x.mu.Unlock()
	return nil
}

// run indexes until stop is closed, then indexes what is left.
func (x *indexer) run(stop <-chan struct{}) {
	for {
		select {
		case <-x.kick:
		case <-stop:
			x.finish()
			return
		}
		for {
			wait, failed := x.due()
			if wait <= 0 {
				break
			}
			t := time.NewTimer(wait)
			kick := x.kick
			if failed {
				kick = nil // after a failure only the pause ends the wait
			}
			select {
			case <-t.C:
			case <-kick:
				t.Stop()
			case <-stop:
				t.Stop()
				x.finish()
				return
			}
		}
		x.flush()
	}
}

// due says how long to wait before the next transaction (<= 0: now),
// and whether the wait is the pause after a failure.
func (x *indexer) due() (time.Duration, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if len(x.frames) == 0 {
		return 0, false
	}
	if x.err != nil {
		return indexRetry - time.Since(x.since), true
	}
	if x.urgent || x.rows >= IndexBatch {
		return 0, false
	}
	return IndexDelay - time.Since(x.since), false
}

// flush puts the waiting frames (up to IndexBatch rows, whole frames) in
// the table in one transaction.
func (x *indexer) flush() {
	x.mu.Lock()
	n, count := 0, 0
	for n < len(x.frames) && (n == 0 || count+len(x.frames[n].Rows) <= IndexBatch) {
		count += len(x.frames[n].Rows)
		n++
	}
	if n == 0 {
		x.urgent = false
		x.mu.Unlock()
		return
	}
	from, next := x.table, x.frames[n-1].Next
	rows := make([]store.EventRow, 0, count)
	for _, fr := range x.frames[:n] {
		rows = append(rows, fr.Rows...)
	}
	x.mu.Unlock()

	err := x.w.Append(context.Background(), from, rows, next)

	x.mu.Lock()
	if err == nil {
		clear(x.frames[:n])
		x.frames = x.frames[n:]
		x.rows -= count
		x.table = next
		x.since = time.Now()
		if len(x.frames) == 0 || x.rows < IndexBatch {
			x.urgent = x.urgent && len(x.frames) > 0
		}
	} else {
		x.since = time.Now() // the pause runs from the failure
	}
	x.err = err
	close(x.progress)
	x.progress = make(chan struct{})
	more := len(x.frames) > 0
	x.mu.Unlock()
	if err != nil {
		x.log.Error("audit log: putting committed events in the table failed; they are kept in the journal and tried again", "events", count, "err", err)
		x.signal() // the loop waits out the pause, then tries again
		return
	}
	if more {
		x.signal()
	}
	if x.j.Segments() > 1 {
		// Segments the table now holds are removed once it is on disk.
		if err := x.w.Sync(); err != nil {
			x.log.Error("audit log: syncing the table failed; journal segments kept", "err", err)
		} else if err := x.j.Release(next.Size); err != nil {
			x.log.Error("audit log: removing indexed journal segments", "err", err)
		}
	}
}

// finish indexes everything left; if the table then holds it all, syncs
// it and empties the journal, so that the next start has nothing to
// recover.
func (x *indexer) finish() {
	for {
		x.flush()
		x.mu.Lock()
		left, err := len(x.frames), x.err
		x.mu.Unlock()
		if left == 0 || err != nil {
			break
		}
	}
	x.mu.Lock()
	x.stopped = true
	left := x.rows
	close(x.progress)
	x.progress = make(chan struct{})
	x.mu.Unlock()
	if left > 0 {
		x.log.Error("audit log: events left in the journal for the next start", "events", left)
		return
	}
	err := x.w.Sync()
	if err == nil {
		err = x.j.Reset()
	}
	switch {
	case errors.Is(err, store.ErrForeignFrames):
		x.log.Info("audit log: events another process wrote at the last moment are left in the journal for the next start")
	case err != nil:
		x.log.Error("audit log: emptying the journal at stop", "err", err)
	}
}
