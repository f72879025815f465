package audit

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
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
