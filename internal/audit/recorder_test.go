package audit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis-dev/portcullis/internal/store"
)

func newStore(t *testing.T) *store.DB {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "a.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func TestRecordIsDurableUnderConcurrency(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	r := NewRecorder(st, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	const writers, each = 32, 50
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				e := Decision(TypeDecision, time.Now(), Subject{}, "")
				e.Agent, e.RequestID = "a", "r"
				errs <- r.Record(context.Background(), e)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	// Every acknowledged event is in the store, each once.
	rows, err := st.Events(context.Background(), store.EventQuery{})
	if err != nil || len(rows) != writers*each {
		t.Fatalf("%d rows, %v; want %d", len(rows), err, writers*each)
	}
	cancel()
	<-done
	if err := r.Record(context.Background(), Decision(TypeDecision, time.Now(), Subject{}, "")); !errors.Is(err, ErrClosed) {
		t.Errorf("record after stop: %v", err)
	}
}

func TestSubmittedEventsAreFlushedOnStop(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	r := NewRecorder(st, slog.New(slog.NewTextHandler(io.Discard, nil)))
	for i := 0; i < 100; i++ {
		if err := r.Submit(New(TypeUpstream, OutcomeInfo, "", time.Now(), Subject{})); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // stop at once: the queue must still be drained
	r.Run(ctx)
	rows, _ := st.Events(context.Background(), store.EventQuery{})
	if len(rows) != 100 {
		t.Errorf("%d of 100 submitted events written", len(rows))
	}
}

type failingStore struct{}

func (failingStore) AppendLog(context.Context, func(store.LogState) ([]store.EventRow, store.LogState, error)) error {
	return errors.New("disk full")
}

func TestStoreFailureIsReturnedToTheCaller(t *testing.T) {
	t.Parallel()
	r := NewRecorder(failingStore{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Run(ctx)
	if err := r.Record(context.Background(), Decision(TypeDecision, time.Now(), Subject{}, "")); err == nil {
		t.Fatal("a failed write was acknowledged; the caller would allow an unrecorded action")
	}
}

func TestDecisionStartsAsDeny(t *testing.T) {
	if e := Decision(TypeDecision, time.Now(), Subject{}, ""); e.Outcome != OutcomeDeny {
		t.Errorf("outcome %q", e.Outcome)
	}
}

func TestRedactArguments(t *testing.T) {
	got, n := RedactArguments([]byte(`{"path":"/a","password":"hunter2","nested":{"token":"t","list":["ok"]},"big":"` + strings.Repeat("x", 300) + `","n":5}`))
	s := string(got)
	if n != 3 || strings.Contains(s, "hunter2") || strings.Contains(s, `"t"`) || strings.Contains(s, "xxxx") ||
		!strings.Contains(s, `"path":"/a"`) || !strings.Contains(s, `"n":5`) || !strings.Contains(s, `"ok"`) {
		t.Errorf("redacted %d: %s", n, s)
	}
	if got, n := RedactArguments([]byte(`not json`)); n != 1 || !strings.HasPrefix(string(got), `"sha256:`) {
		t.Errorf("non-JSON: %s", got)
	}
}

// TestCommitThenDurableAndInterleavedWriters: Commit returns once the event
// is readable; another writer (as another process would, through the
// store) appending in between is built upon, and the log verifies.
func TestCommitThenDurableAndInterleavedWriters(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	st := openDB(t, filepath.Join(dir, "a.db"))
	r := NewRecorder(st, discard())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	for i := 0; i < 20; i++ {
		e := Decision(TypeDecision, time.Now(), Subject{}, "")
		e.RequestID = "commit"
		rc, err := r.Commit(context.Background(), e)
		if err != nil {
			t.Fatal(err)
		}
		rows, _ := st.Events(context.Background(), store.EventQuery{RequestID: "commit"})
		if len(rows) != i+1 {
			t.Fatalf("committed event not readable: %d rows", len(rows))
		}
		if err := rc.Durable(context.Background()); err != nil {
			t.Fatal(err)
		}
		if i%5 == 0 { // another writer appends through the store
			if err := WriteNow(context.Background(), st, New(TypeLifecycle, OutcomeInfo, "", time.Now(), Subject{})); err != nil {
				t.Fatal(err)
			}
		}
	}
	cancel()
	<-done
	checkpointAndVerify(t, st, dir, 24)
}

// runRecorder runs a recorder on st until cancel (or the test's end) and
// returns once its loop serves; done is closed when Run has returned.
func runRecorder(t *testing.T, st *store.DB) (r *Recorder, cancel func(), done chan struct{}) {
	r = NewRecorder(st, discard())
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	done = make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	for !r.looping.Load() {
		time.Sleep(time.Millisecond)
	}
	return r, cancel, done
}

// A lone caller's Commit is written from its own goroutine (no hand-off to
// Run's); under concurrency and while the recorder stops, every
// acknowledged event (recorded, committed, or accepted by Submit) is in the
// log once and the log verifies.
func TestCommitsWrittenByTheirCallers(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	st := openDB(t, filepath.Join(dir, "a.db"))
	r, cancel, done := runRecorder(t, st)
	const sequential = 50
	for i := range sequential {
		e := Decision(TypeDecision, time.Now(), Subject{RequestID: fmt.Sprintf("seq-%d", i)}, "")
		if _, err := r.Commit(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	// The catch-up ticker may hold the lock at a commit's instant: most,
	// not all, are written directly.
	if n := r.directWrites.Load(); n < sequential/2 {
		t.Fatalf("%d of %d lone commits written by their callers", n, sequential)
	}

	const writers, each = 16, 40
	var mu sync.Mutex
	acked := map[string]bool{}
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if w == 0 && i == each/2 {
					cancel() // stop while the others write
				}
				id := fmt.Sprintf("w%d-%d", w, i)
				e := Decision(TypeDecision, time.Now(), Subject{RequestID: id}, "")
				// Nothing acknowledged may wait for good (a commit taken
				// after the stop would): a bound turns that into a failure.
				wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
				var err error
				switch i % 4 {
				case 0:
					err = r.Record(wctx, e)
				case 3:
					err = r.Submit(e)
				default:
					var rc *Receipt
					if rc, err = r.Commit(wctx, e); err == nil && i%4 == 2 {
						err = rc.Durable(wctx)
					}
				}
				wcancel()
				switch {
				case err == nil:
					mu.Lock()
					acked[id] = true
					mu.Unlock()
				case !errors.Is(err, ErrClosed):
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	<-done
	rows, err := st.Events(context.Background(), store.EventQuery{})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, row := range rows {
		seen[row.RequestID]++
	}
	for i := range sequential {
		acked[fmt.Sprintf("seq-%d", i)] = true
	}
	for id := range acked {
		if seen[id] != 1 {
			t.Errorf("acknowledged event %s is in the log %d times", id, seen[id])
		}
	}
	if len(acked) <= sequential {
		t.Fatalf("no concurrent event acknowledged before the stop")
	}
	checkpointAndVerify(t, st, dir, int64(len(rows)))
}

// Events keep the order they were accepted in: an event submitted (queued)
// and then a decision committed by the same goroutine get increasing
// numbers, though the commit could be written by its caller while Run
// still holds the submitted one (waiting for the sync in flight).
func TestEventsKeepTheOrderTheyWereAcceptedIn(t *testing.T) {
	t.Parallel()
	st := openDB(t, filepath.Join(t.TempDir(), "a.db"))
	r, cancel, done := runRecorder(t, st)
	event := func(id string, i int) *Event {
		return Decision(TypeDecision, time.Now(), Subject{RequestID: fmt.Sprintf("%s-%d", id, i)}, "")
	}
	const n = 200
	for i := range n {
		// A commit whose sync is in flight when the submitted one is
		// taken off the queue; then the pair.
		if _, err := r.Commit(context.Background(), event("p", i)); err != nil {
			t.Fatal(err)
		}
		if err := r.Submit(event("a", i)); err != nil {
			t.Fatal(err)
		}
		if _, err := r.Commit(context.Background(), event("b", i)); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	<-done
	rows, err := st.Events(context.Background(), store.EventQuery{})
	if err != nil {
		t.Fatal(err)
	}
	seq := map[string]int64{}
	for _, row := range rows {
		seq[row.RequestID] = row.Seq
	}
	for i := range n {
		a, b := seq[fmt.Sprintf("a-%d", i)], seq[fmt.Sprintf("b-%d", i)]
		if a == 0 || b == 0 || a > b {
			t.Fatalf("pair %d: submitted event at %d, the commit after it at %d", i, a, b)
		}
	}
	if r.directWrites.Load() == 0 {
		t.Fatal("no commit was written by its caller")
	}
}

// TestCommitsStopWhileTheDiskIsBehind: while an event committed longer
// ago than MaxSyncLag is not yet synced (a stalled disk), the log takes
// no events, so no call goes on past that unrecorded on disk (with
// audit.sync background no answer waits for the disk); once the disk
// catches up it takes them again.
func TestCommitsStopWhileTheDiskIsBehind(t *testing.T) {
	t.Parallel()
	st := openDB(t, filepath.Join(t.TempDir(), "a.db"))
	r := NewRecorder(st, discard())
	r.MaxSyncLag = 50 * time.Millisecond
	if err := r.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	real := r.sync
	stalled := make(chan struct{})
	var unstall sync.Once
	r.sync = func() error { <-stalled; return real() }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	defer func() { unstall.Do(func() { close(stalled) }); cancel(); <-done }()
	commit := func() (*Receipt, error) {
		return r.Commit(context.Background(), Decision(TypeDecision, time.Now(), Subject{Agent: "a"}, ""))
	}
	first, err := commit()
	if err != nil {
		t.Fatalf("a commit with the disk keeping up: %v", err)
	}
	time.Sleep(100 * time.Millisecond)
	if _, err := commit(); !errors.Is(err, ErrSyncBehind) {
		t.Fatalf("a commit with the disk 100ms behind: %v, want ErrSyncBehind", err)
	}
	// A record (a denial) waits for the disk, and so fails with the
	// caller's deadline.
	rctx, rcancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer rcancel()
	if err := r.Record(rctx, Decision(TypeDecision, time.Now(), Subject{Agent: "a"}, "")); err == nil {
		t.Fatal("a record with the disk stalled succeeded")
	}
	unstall.Do(func() { close(stalled) })
	if err := first.Durable(context.Background()); err != nil {
		t.Fatal(err)
	}
	rc, err := commit()
	if err != nil {
		t.Fatalf("a commit once the disk caught up: %v", err)
	}
	if err := rc.Durable(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// With LazyCommits (audit.sync background) commits nobody waits for are
// synced together once the oldest has waited the window, however few; an
// event someone waits for, by Record or by Durable, is synced at once,
// with every event before it.
func TestLazyCommitsWaitTheWindowUnlessSomeoneWaits(t *testing.T) {
	t.Parallel()
	newLazy := func(window time.Duration) (*Recorder, func(want int) []int) {
		st := openDB(t, filepath.Join(t.TempDir(), "a.db"))
		r := NewRecorder(st, discard())
		r.LazyCommits, r.SyncWindow = true, window
		var mu sync.Mutex
		var syncs []int
		r.OnSync = func(n int, err error) {
			mu.Lock()
			syncs = append(syncs, n)
			mu.Unlock()
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { r.Run(ctx); close(done) }()
		t.Cleanup(func() { cancel(); <-done })
		// OnSync runs after the receipts are settled: wait for it.
		return r, func(want int) []int {
			deadline := time.Now().Add(10 * time.Second)
			for {
				mu.Lock()
				got := slices.Clone(syncs)
				mu.Unlock()
				if len(got) >= want || time.Now().After(deadline) {
					return got
				}
				time.Sleep(time.Millisecond)
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	commit := func(r *Recorder) *Receipt {
		t.Helper()
		rc, err := r.Commit(ctx, Decision(TypeDecision, time.Now(), Subject{Agent: "a"}, ""))
		if err != nil {
			t.Fatal(err)
		}
		return rc
	}
	synced := func(rc *Receipt) bool {
		select {
		case <-rc.durable:
			return true
		default:
			return false
		}
	}

	r, syncs := newLazy(time.Hour) // only someone waiting makes it sync
	rcs := []*Receipt{commit(r), commit(r), commit(r)}
	if n := r.kicks.Load(); n != 1 {
		t.Errorf("three lazy commits woke the sync loop %d times, want once (the first's timer covers the others)", n)
	}
	time.Sleep(50 * time.Millisecond)
	for i, rc := range rcs {
		if synced(rc) {
			t.Fatalf("commit %d synced although nobody waits for it", i)
		}
	}
	if err := rcs[2].Durable(ctx); err != nil {
		t.Fatalf("waiting for a lazy commit: %v", err)
	}
	if !synced(rcs[0]) || !synced(rcs[1]) || !slices.Equal(syncs(1), []int{3}) {
		t.Fatalf("the three commits were not made durable by one sync: %v", syncs(1))
	}
	// A record (a denial) right after that sync of several: at once, not
	// the window since the last sync as under load with answers waiting.
	before := commit(r)
	if err := r.Record(ctx, Decision(TypeDecision, time.Now(), Subject{Agent: "a"}, "")); err != nil {
		t.Fatalf("a record with lazy commits: %v", err)
	}
	if !synced(before) || !slices.Equal(syncs(2), []int{3, 2}) {
		t.Fatalf("a record was not synced at once with the commit before it: %v", syncs(2))
	}

	r, syncs = newLazy(20 * time.Millisecond)
	rc := commit(r)
	for !synced(rc) {
		if ctx.Err() != nil {
			t.Fatal("a lazy commit was not synced once it had waited the window")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if !slices.Equal(syncs(1), []int{1}) {
		t.Fatalf("syncs: %v", syncs(1))
	}
}

// While a sync runs, the first commit after it wakes the sync loop and
// those behind it do not (its next sync takes them all); every one is
// made durable.
func TestCommitsBehindAnUnsyncedOneDoNotWakeTheSyncLoop(t *testing.T) {
	t.Parallel()
	st := openDB(t, filepath.Join(t.TempDir(), "a.db"))
	r := NewRecorder(st, discard())
	if err := r.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	real := r.sync
	entered, release := make(chan struct{}, 16), make(chan struct{})
	r.sync = func() error { entered <- struct{}{}; <-release; return real() }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	for !r.looping.Load() {
		time.Sleep(time.Millisecond)
	}
	var rcs []*Receipt
	commit := func() {
		rc, err := r.Commit(context.Background(), Decision(TypeDecision, time.Now(), Subject{Agent: "a"}, ""))
		if err != nil {
			t.Fatal(err)
		}
		rcs = append(rcs, rc)
	}
	commit()
	<-entered // the first commit's sync runs, and holds
	for range 4 {
		commit()
	}
	if n := r.kicks.Load(); n != 2 {
		t.Errorf("five commits, four behind a running sync, woke the sync loop %d times, want 2", n)
	}
	close(release)
	dctx, dcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer dcancel()
	for i, rc := range rcs {
		if err := rc.Durable(dctx); err != nil {
			t.Fatalf("commit %d: %v", i, err)
		}
	}
}

// A Durable called as soon as a queued lazy commit returns (Run's
// goroutine wrote it, with many others nobody waits for) makes the next
// sync happen at once: its receipt is in the sync loop's hands before the
// committer is released, so the hurry is never spent on a sync that does
// not take it. The window is an hour: a lost hurry is a timeout.
func TestDurableRightAfterAQueuedLazyCommit(t *testing.T) {
	t.Parallel()
	for it := range 20 {
		st := openDB(t, filepath.Join(t.TempDir(), "a.db"))
		r := NewRecorder(st, discard())
		r.LazyCommits, r.SyncWindow = true, time.Hour
		if err := r.Open(context.Background()); err != nil {
			t.Fatal(err)
		}
		res := make(chan error, 1)
		// Queued first (Run is not running: no direct commit), then
		// waited for the moment Commit returns.
		go func() {
			rc, err := r.Commit(context.Background(), Decision(TypeDecision, time.Now(), Subject{Agent: "w"}, ""))
			if err != nil {
				res <- err
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			res <- rc.Durable(ctx)
		}()
		for r.unwritten.Load() != 1 {
			time.Sleep(100 * time.Microsecond)
		}
		const others = 500 // in the same batch, behind it
		var wg sync.WaitGroup
		for range others {
			wg.Go(func() { r.Commit(context.Background(), Decision(TypeDecision, time.Now(), Subject{Agent: "o"}, "")) })
		}
		for r.unwritten.Load() != 1+others {
			time.Sleep(100 * time.Microsecond)
		}
		ctx, stop := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { r.Run(ctx); close(done) }()
		if err := <-res; err != nil {
			t.Errorf("iteration %d: Durable on a lazy commit, called at once: %v (the window is an hour)", it, err)
		}
		wg.Wait()
		stop()
		<-done
	}
}

// Many goroutines commit (waiting with Durable at once, later, or not at
// all) and record, with lazy commits and without, over windows from none
// to 50 ms: every receipt becomes durable, none is stranded (5 s), those
// nobody waits for within the window, and a commit just before the stop
// with the final sync.
func TestRecorderUnderMixedLoadStrandsNoReceipt(t *testing.T) {
	t.Parallel()
	type mode struct {
		lazy   bool
		window time.Duration
	}
	for _, m := range []mode{{true, 50 * time.Millisecond}, {true, time.Millisecond}, {true, 100 * time.Microsecond}, {false, 0}, {false, 500 * time.Microsecond}, {false, 2 * time.Millisecond}} {
		t.Run(fmt.Sprintf("lazy=%v,window=%v", m.lazy, m.window), func(t *testing.T) {
			st := openDB(t, filepath.Join(t.TempDir(), "a.db"))
			r := NewRecorder(st, discard())
			r.LazyCommits, r.SyncWindow = m.lazy, m.window
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { r.Run(ctx); close(done) }()
			const G, N = 12, 100
			var wg sync.WaitGroup
			var mu sync.Mutex
			var unwaited []*Receipt
			var maxWait atomic.Int64
			note := func(d time.Duration) {
				for {
					old := maxWait.Load()
					if int64(d) <= old || maxWait.CompareAndSwap(old, int64(d)) {
						return
					}
				}
			}
			for g := 0; g < G; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < N; i++ {
						e := Decision(TypeDecision, time.Now(), Subject{Agent: "a"}, "")
						wctx, wcancel := context.WithTimeout(context.Background(), 5*time.Second)
						switch rand.IntN(4) {
						case 0:
							start := time.Now()
							if err := r.Record(wctx, e); err != nil {
								t.Errorf("record: %v after %v", err, time.Since(start))
							}
							note(time.Since(start))
						case 1:
							rc, err := r.Commit(wctx, e)
							if err != nil {
								t.Errorf("commit: %v", err)
								break
							}
							mu.Lock()
							unwaited = append(unwaited, rc)
							mu.Unlock()
						default:
							rc, err := r.Commit(wctx, e)
							if err != nil {
								t.Errorf("commit: %v", err)
								break
							}
							if rand.IntN(2) == 0 {
								time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond)
							}
							start := time.Now()
							if err := rc.Durable(wctx); err != nil {
								t.Errorf("durable: %v after %v", err, time.Since(start))
							}
							note(time.Since(start))
						}
						wcancel()
						if rand.IntN(8) == 0 {
							time.Sleep(time.Duration(rand.IntN(2000)) * time.Microsecond)
						}
					}
				}()
			}
			wg.Wait()
			// Unwaited lazy receipts: durable within the window (+ slack).
			deadline := time.After(m.window + 5*time.Second)
			for _, rc := range unwaited {
				select {
				case <-rc.durable:
				case <-deadline:
					t.Fatalf("an unwaited receipt is not durable %v after the last commit", m.window+5*time.Second)
				}
			}
			// One more lazy commit, then stop at once: the final sync takes it.
			rc, err := r.Commit(context.Background(), Decision(TypeDecision, time.Now(), Subject{Agent: "a"}, ""))
			if err != nil {
				t.Fatal(err)
			}
			cancel()
			<-done
			select {
			case <-rc.durable:
			default:
				t.Fatal("a commit before stop is not durable after Run returned")
			}
			t.Logf("longest wait of a waiter: %v; direct commits %d, sync loop wake-ups %d", time.Duration(maxWait.Load()).Round(100*time.Microsecond), r.directWrites.Load(), r.kicks.Load())
		})
	}
}
