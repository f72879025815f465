package audit

import (
	"context"
	"path/filepath"
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
// sends a sink only what DurableSize made durable (one fsync, at once, not
// after the window), so that a crash of the machine never takes back an
// event a SIEM has.
func TestExportSendsOnlyDurableEvents(t *testing.T) {
	t.Parallel()
	st := openDB(t, filepath.Join(t.TempDir(), "a.db"))
	r := NewRecorder(st, discard())
	r.LazyCommits, r.SyncWindow = true, time.Hour // nothing syncs unless asked
	var mu sync.Mutex
	synced := 0
	r.OnSync = func(n int, err error) {
		mu.Lock()
		synced += n
		mu.Unlock()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := r.Open(ctx); err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(rctx); close(done) }()
	defer func() { stop(); <-done }()

	var rcs []*Receipt
	for range 3 {
		rc, err := r.Commit(ctx, Decision(TypeDecision, time.Now(), Subject{Agent: "a"}, ""))
		if err != nil {
			t.Fatal(err)
		}
		rcs = append(rcs, rc)
	}
	for _, rc := range rcs {
		select {
		case <-rc.durable:
			t.Fatal("a lazy commit was synced before anyone asked (the window is an hour)")
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
	mu.Lock()
	got := synced
	mu.Unlock()
	if got < 1 {
		t.Errorf("no fsync reported before the export")
	}

	// Asked again with nothing written since, no fsync.
	mu.Lock()
	before := synced
	mu.Unlock()
	if n, err := r.DurableSize(ctx); err != nil || n != 3 {
		t.Fatalf("DurableSize of an idle log: %d, %v; want 3", n, err)
	}
	time.Sleep(20 * time.Millisecond)
	mu.Lock()
	after := synced
	mu.Unlock()
	if after != before {
		t.Errorf("an idle log was fsynced again for the exporter (%d receipts synced, then %d)", before, after)
	}

	// A size short of what the table holds bounds what is sent.
	rc, err := r.Commit(ctx, Decision(TypeDecision, time.Now(), Subject{Agent: "a"}, ""))
	if err != nil {
		t.Fatal(err)
	}
	held := &Exporter{Store: st, Sinks: []Sink{sink}, Log: discard(), Durable: func(context.Context) (int64, error) { return 3, nil }}
	if n, err := held.Step(ctx, sink); err != nil || n != 0 {
		t.Fatalf("export step with 3 durable of 4: sent %d (%v), want none", n, err)
	}
	if n, err := x.Step(ctx, sink); err != nil || n != 1 {
		t.Fatalf("export step: %d events, %v; want the fourth", n, err)
	}
	if err := rc.Durable(ctx); err != nil {
		t.Fatal(err)
	}
	if want := []int64{1, 2, 3, 4}; len(sink.seqs) != len(want) || sink.seqs[3] != 4 {
		t.Errorf("sent %v, want %v", sink.seqs, want)
	}
}
