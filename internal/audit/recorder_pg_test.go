package audit

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/portcullis-dev/portcullis/internal/pgtest"
	"github.com/portcullis-dev/portcullis/internal/store"
)

func TestMain(m *testing.M) {
	code := m.Run()
	pgtest.Stop()
	os.Exit(code)
}

// Two recorders (two gateways of a fleet) commit to one PostgreSQL log
// concurrently, asynchronously then flushed: each committed event is
// readable by the other at once, each receipt becomes durable, writers
// through the store interleave, and the one log verifies.
func TestRecordersOfAFleetShareOneLog(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DSN(t)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	var stores []*store.DB
	var recs []*Recorder
	ctx, cancel := context.WithCancel(context.Background())
	var running sync.WaitGroup
	for range 2 {
		st, err := store.OpenPostgres(context.Background(), dsn, store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		r := NewRecorder(st, quiet)
		running.Add(1)
		go func() { defer running.Done(); r.Run(ctx) }()
		stores, recs = append(stores, st), append(recs, r)
	}
	var wg sync.WaitGroup
	for g, r := range recs {
		other := stores[1-g]
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 15; i++ {
					e := Decision(TypeDecision, time.Now(), Subject{Agent: "a"}, "tools/call")
					e.RequestID = fmt.Sprintf("g%d-w%d-%d", g, w, i)
					rc, err := r.Commit(context.Background(), e)
					if err != nil {
						t.Error(err)
						return
					}
					if rows, _ := other.Events(context.Background(), store.EventQuery{RequestID: e.RequestID}); len(rows) != 1 {
						t.Errorf("%s committed but not readable by the other gateway", e.RequestID)
					}
					if err := rc.Durable(context.Background()); err != nil {
						t.Error(err)
						return
					}
					if i%5 == 0 {
						if err := WriteNow(context.Background(), other, New(TypeLifecycle, OutcomeInfo, "", time.Now(), Subject{})); err != nil {
							t.Error(err)
						}
					}
				}
			}()
		}
	}
	wg.Wait()
	cancel()
	running.Wait()
	if recs[0].async == nil || recs[0].w != nil {
		t.Fatal("the recorder does not commit asynchronously on PostgreSQL")
	}
	signer, vkey, err := LoadOrCreateLogKey(t.TempDir(), "test/fleet")
	if err != nil {
		t.Fatal(err)
	}
	cp := &Checkpointer{Store: stores[0], Signer: signer, Origin: "test/fleet", Log: quiet}
	if _, err := cp.Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	v, _ := note.NewVerifier(vkey)
	rep, err := Verify(context.Background(), stores[1], v, nil)
	if err != nil || !rep.OK() || rep.Events != 2*4*15+2*4*3 {
		t.Fatalf("verify: %+v %v", rep, err)
	}
}
