package audit

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"
)

// memorySink keeps what it is sent.
type memorySink struct {
	mu   sync.Mutex
	seqs []int64
}

func (s *memorySink) Name() string { return "memory" }

func (s *memorySink) Send(_ context.Context, events []*Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range events {
		s.seqs = append(s.seqs, e.Seq)
	}
	return nil
}

// With audit.sync background an answered call's decision may wait the
// window for its fsync while the table already holds it: the exporter
// sends a sink only what DurableSize saw on disk (the sync loop's next
// fsync, not hurried), so that a crash of the machine never takes back an
// event a SIEM has; an idle log costs no fsync; a process appending
// through another's journal leaves the export to the owner.
func TestExportSendsOnlyDurableEvents(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "a.db")
	st := openDB(t, path)
	r := NewRecorder(st, discard())
	const window = 2 * time.Second // long enough to look before it runs out
	r.LazyCommits, r.SyncWindow, r.MaxSyncLag = true, window, time.Hour
	syncs := make(chan int, 16)
	r.OnSync = func(n int, err error) { syncs <- n }
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := r.Open(ctx); err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(rctx); close(done) }()
	defer func() { stop(); <-done }()

	commit := func() *Receipt {
		t.Helper()
		rc, err := r.Commit(ctx, Decision(TypeDecision, time.Now(), Subject{Agent: "a"}, ""))
		if err != nil {
			t.Fatal(err)
		}
		return rc
	}
	rcs := []*Receipt{commit(), commit(), commit()}
	for _, rc := range rcs {
		select {
		case <-rc.durable:
			t.Fatal("a lazy commit was synced before its window ran out")
		default:
		}
	}

	sink := &memorySink{}
	x := &Exporter{Store: st, Sinks: []Sink{sink}, Log: discard(), Durable: r.DurableSize}
	n, err := x.Step(ctx, sink)
	if err != nil || n != 3 {
		t.Fatalf("export step: %d events, %v; want the 3 committed", n, err)
	}
	for i, rc := range rcs {
		select {
		case <-rc.durable:
		default:
			t.Fatalf("event %d was sent to the sink before it was on disk", i+1)
		}
	}
	select {
	case <-syncs: // the fsync the export waited for
	case <-ctx.Done():
		t.Fatal("no fsync reported")
	}

	// Asked again with nothing written since: no fsync, no wake-up.
	kicks := r.kicks.Load()
	if n, err := r.DurableSize(ctx); err != nil || n != 3 {
		t.Fatalf("DurableSize of an idle log: %d, %v; want 3", n, err)
	}
	if r.kicks.Load() != kicks {
		t.Error("an idle log's sync loop was woken for the exporter")
	}

	// A size short of what the table holds bounds what is sent.
	rc := commit()
	held := &Exporter{Store: st, Sinks: []Sink{sink}, Log: discard(), Durable: func(context.Context) (int64, error) { return 3, nil }}
	if n, err := held.Step(ctx, sink); err != nil || n != 0 {
		t.Fatalf("export step with 3 durable of 4: sent %d (%v), want none", n, err)
	}
	if n, err := x.Step(ctx, sink); err != nil || n != 1 {
		t.Fatalf("export step: %d events, %v; want the fourth", n, err)
	}
	select {
	case <-rc.durable:
	default:
		t.Fatal("the fourth event was sent before it was on disk")
	}
	if want := []int64{1, 2, 3, 4}; !slices.Equal(sink.seqs, want) {
		t.Errorf("sent %v, want %v", sink.seqs, want)
	}

	// Another process on the same data directory appends through this
	// one's journal: it cannot fsync what the owner wrote, so it sends
	// nothing (the owner exports).
	r2 := NewRecorder(openDB(t, path), discard())
	if err := r2.Open(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := r2.DurableSize(ctx); err != nil || n != 0 {
		t.Errorf("DurableSize beside the journal's owner: %d, %v; want 0", n, err)
	}

	// Stopped, the recorder answers at once (ErrClosed), not when the
	// caller's context ends.
	stop()
	<-done
	sctx, cancelS := context.WithTimeout(ctx, 5*time.Second)
	defer cancelS()
	r.syncMu.Lock()
	r.syncedSize = 0 // as if a frame were written after the last fsync
	r.syncMu.Unlock()
	if _, err := r.DurableSize(sctx); !errors.Is(err, ErrClosed) {
		t.Errorf("DurableSize of a stopped recorder: %v, want ErrClosed", err)
	}
}
