package audit

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/portcullis-dev/portcullis/internal/store"
)

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// openDB opens (another handle on) the store at path, closed with the test.
func openDB(t *testing.T, path string) *store.DB {
	t.Helper()
	st, err := store.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// checkpointAndVerify signs a checkpoint of st's log and verifies it
// offline: it must verify, with want events.
func checkpointAndVerify(t *testing.T, st *store.DB, dir string, want int64) {
	t.Helper()
	signer, vkey, err := LoadOrCreateLogKey(filepath.Join(dir, "keys"), "test/audit")
	if err != nil {
		t.Fatal(err)
	}
	cp := &Checkpointer{Store: st, Signer: signer, Origin: "test/audit", Log: discard()}
	if _, err := cp.Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	v, _ := note.NewVerifier(vkey)
	rep, err := Verify(context.Background(), st, v, nil)
	if err != nil || !rep.OK() || rep.Events != want {
		t.Fatalf("verify: %+v %v; want %d events", rep, err, want)
	}
}

// While a recorder owns the log, another process (here a second handle on
// the same database, which takes the same locks) writes events: they go
// to the journal, the recorder builds on them, every event reaches the
// table, the log verifies, and a clean stop leaves the journal empty.
func TestJournalOtherWritersWhileOwned(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.db")
	st, other := openDB(t, path), openDB(t, path)
	r := NewRecorder(st, discard())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	for i := 0; i < 30; i++ {
		e := Decision(TypeDecision, time.Now(), Subject{}, "")
		e.RequestID = "own"
		if err := r.Record(context.Background(), e); err != nil {
			t.Fatal(err)
		}
		if i%3 == 0 {
			o := New(TypeLifecycle, OutcomeInfo, "", time.Now(), Subject{})
			o.RequestID = "other"
			if err := WriteNow(context.Background(), other, o); err != nil {
				t.Fatal(err)
			}
			// A reader in the owner's process sees it at once: the read
			// barrier has the owner read other processes' frames first.
			rows, err := st.Events(context.Background(), store.EventQuery{RequestID: "other"})
			if err != nil || len(rows) != i/3+1 {
				t.Fatalf("after %d other writes: %d rows, %v", i/3+1, len(rows), err)
			}
		}
	}
	cancel()
	<-done
	checkpointAndVerify(t, st, dir, 40)
	segs, _ := filepath.Glob(filepath.Join(store.JournalDir(path), "*.journal"))
	for _, s := range segs {
		if b, err := os.ReadFile(s); err != nil || len(bytes.Trim(b, "\x00")) != 0 {
			t.Errorf("journal after a clean stop: %s %v", s, err)
		}
	}
}

// A journal whose events do not give the tree its frame records (edited
// while the gateway was down) is refused at start: nothing is recorded on
// top of it.
func TestJournalTamperedIsRefused(t *testing.T) {
	st := openDB(t, filepath.Join(t.TempDir(), "a.db"))
	// A recorder that dies with events only in the journal.
	w, err := st.LogWriter(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	j, _, _, err := w.OpenJournal(context.Background(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	rows, next, err := buildRows(store.LogState{}, []*Event{New(TypeLifecycle, OutcomeInfo, "", time.Now(), Subject{}), New(TypeLifecycle, OutcomeInfo, "", time.Now(), Subject{})})
	if err != nil {
		t.Fatal(err)
	}
	rows[1].Body = append(rows[1].Body[:len(rows[1].Body)-1], ' ', '}') // edited; the leaf hash is not
	if err := j.Append(func([]store.JournalFrame) ([]store.EventRow, store.LogState, error) { return rows, next, nil }); err != nil {
		t.Fatal(err)
	}
	j.Close()
	w.Close()
	r := NewRecorder(st, discard())
	if err := r.Open(context.Background()); err == nil {
		t.Fatal("a tampered journal was taken")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	if err := r.Record(context.Background(), New(TypeLifecycle, OutcomeInfo, "", time.Now(), Subject{})); err == nil {
		t.Fatal("an event was recorded on top of a tampered journal")
	}
}

// Processes that write events while no gateway owns the journal (two CLI
// commands at once) never give two events one number: every event each
// was told is written is in the log, which verifies.
func TestJournalUnownedWritersDoNotCollide(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.db")
	st := openDB(t, path)
	// A gateway ran here once: the journal exists, unowned.
	r := NewRecorder(st, discard())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r.Run(ctx)
	handles := []*store.DB{st, openDB(t, path), openDB(t, path)}
	const each = 15
	errs := make(chan error, len(handles)*2)
	for _, h := range handles {
		for range 2 {
			go func() {
				for range each {
					if err := WriteNow(context.Background(), h, New(TypeLifecycle, OutcomeInfo, "", time.Now(), Subject{})); err != nil {
						errs <- err
						return
					}
				}
				errs <- nil
			}()
		}
	}
	for range len(handles) * 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	checkpointAndVerify(t, st, dir, int64(len(handles)*2*each))
}

// failingWriter fails its first Append calls, as a busy or full disk would.
type failingWriter struct {
	journalWriter
	mu    sync.Mutex
	fails int
	calls int
}

func (w *failingWriter) Append(ctx context.Context, from store.LogState, rows []store.EventRow, next store.LogState) error {
	w.mu.Lock()
	w.calls++
	fail := w.calls <= w.fails
	w.mu.Unlock()
	if fail {
		return errors.New("database is locked")
	}
	return w.journalWriter.Append(ctx, from, rows, next)
}

// The table failing to take events: they wait in the journal, readers are
// told, the indexer tries again after its pause however often it is woken
// meanwhile, and then the table has them.
func TestIndexerRetriesAfterAFailure(t *testing.T) {
	st := newStore(t)
	w, err := st.LogWriter(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	j, base, _, err := w.OpenJournal(context.Background(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	fw := &failingWriter{journalWriter: w, fails: 1}
	x := newIndexer(fw, j, base, discard())
	stop, done := make(chan struct{}), make(chan struct{})
	go func() { x.run(stop); close(done) }()
	rows, next, err := buildRows(base, []*Event{New(TypeLifecycle, OutcomeInfo, "", time.Now(), Subject{})})
	if err != nil {
		t.Fatal(err)
	}
	x.add(store.JournalFrame{Rows: rows, Next: next})
	if err := x.barrier(context.Background()); err == nil {
		t.Fatal("a reader was told the table holds an event it failed to take")
	}
	// Woken again and again during the pause: no deadlock, no early retry.
	for range 5 {
		x.signal()
		time.Sleep(20 * time.Millisecond)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := x.barrier(context.Background())
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the table never took the event: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got, _ := w.State(context.Background()); got.Size != 1 {
		t.Fatalf("table size %d", got.Size)
	}
	close(stop)
	<-done
}

// A read in the owner's process whose barrier cannot read other
// processes' frames (one holds the append lock past the wait: a CLI
// command suspended mid-write) fails, rather than answering as if there
// were none; once the lock is free, reads succeed again.
func TestReadFailsWhenOtherWritersCannotBeRead(t *testing.T) {
	t.Parallel()
	_, st, path := ownerWithAnEvent(t)
	// Another open file on append.lock: flock excludes it like another
	// process.
	held, err := os.OpenFile(filepath.Join(store.JournalDir(path), "append.lock"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if err := syscall.Flock(int(held.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Events(context.Background(), store.EventQuery{}); err == nil {
		t.Fatal("a read went on without other processes' events")
	}
	syscall.Flock(int(held.Fd()), syscall.LOCK_UN)
	if rows, err := st.Events(context.Background(), store.EventQuery{}); err != nil || len(rows) != 1 {
		t.Fatalf("after the lock is free: %d rows, %v", len(rows), err)
	}
}

// TestReadFailsWhenOtherWritersFramesCannotBeTaken: a frame another
// process appended that does not continue the log (an edited event) stops
// the recorder; reads fail too, at once and after, rather than answer
// from a log that lacks events the journal holds.
func TestReadFailsWhenOtherWritersFramesCannotBeTaken(t *testing.T) {
	t.Parallel()
	r, st, path := ownerWithAnEvent(t)
	err := store.AppendForeign(store.JournalDir(path), func(from store.LogState) ([]store.EventRow, store.LogState, error) {
		rows, next, err := buildRows(from, []*Event{New(TypeLifecycle, OutcomeInfo, "", time.Now(), Subject{})})
		if err == nil {
			rows[0].Body = append(rows[0].Body[:len(rows[0].Body)-1], ' ', '}') // edited; the leaf hash is not
		}
		return rows, next, err
	}, func() (store.LogState, error) { return store.LogState{}, errors.New("the journal has frames") })
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if _, err := st.Events(context.Background(), store.EventQuery{}); err == nil {
			t.Fatalf("read %d answered without the frame it could not take", i+1)
		}
	}
	if _, err := r.Commit(context.Background(), Decision(TypeDecision, time.Now(), Subject{}, "")); err == nil {
		t.Fatal("an event was committed on top of a frame that does not continue the log")
	}
}

// ownerWithAnEvent runs a recorder owning the journal of a new database
// at path, with one event committed.
func ownerWithAnEvent(t *testing.T) (*Recorder, *store.DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "a.db")
	st := openDB(t, path)
	r, _, _ := runRecorder(t, st)
	if _, err := r.Commit(context.Background(), Decision(TypeDecision, time.Now(), Subject{}, "")); err != nil {
		t.Fatal(err)
	}
	return r, st, path
}
