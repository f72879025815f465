package audit

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/portcullis-dev/portcullis/internal/store"
)

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// While a recorder owns the log, another process (here a second handle on
// the same database, which takes the same locks) writes events: they go
// to the journal, the recorder builds on them, every event reaches the
// table, the log verifies, and a clean stop leaves the journal empty.
func TestJournalOtherWritersWhileOwned(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.db")
	st, err := store.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	other, err := store.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
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
		}
	}
	// The owner reads other processes' frames within CatchUpInterval.
	deadline := time.Now().Add(5 * time.Second)
	for {
		rows, err := st.Events(context.Background(), store.EventQuery{RequestID: "other"})
		if err == nil && len(rows) == 10 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("other writer's events in the table: %d, %v", len(rows), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-done
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
	if err != nil || !rep.OK() || rep.Events != 40 {
		t.Fatalf("verify: %+v %v", rep, err)
	}
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
	dir := t.TempDir()
	path := filepath.Join(dir, "a.db")
	st, err := store.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	// A recorder that dies with events only in the journal.
	w, err := st.LogWriter(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	j, _, _, err := w.OpenJournal(context.Background(), time.Second, continues)
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
