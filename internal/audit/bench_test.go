package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/portcullis-dev/portcullis/internal/store"
)

func benchEvent(i int) *Event {
	e := Decision(TypeDecision, time.Now(), Subject{}, "")
	e.Outcome, e.Agent, e.Method, e.Action = OutcomeAllow, "agent-7", "tools/call", "call_tool"
	e.Target, e.Upstream, e.RequestID = "files__read_text_file", "files", fmt.Sprintf("REQ%012d", i)
	e.PolicyVersion = "sha256:8e1b0c1f5d7a2b33a1f0b7e9d64c2a8f8b5c0d2e3f4a5b6c7d8e9f0a1b2c3d4e"
	e.Policies = []string{"developers-read-files"}
	e.ArgumentsSHA256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
	return e
}

// BenchmarkRecordDurable is sustained appends through the Recorder with
// synchronous=FULL: 64 concurrent writers, each waiting for its event to be
// committed (one fsync per group-committed batch) as a call does.
func BenchmarkRecordDurable(b *testing.B) {
	st, err := store.Open(filepath.Join(b.TempDir(), "b.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	r := NewRecorder(st, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	b.SetParallelism(32) // 64 goroutines on 2 cores
	b.ReportAllocs()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i++
			if err := r.Record(context.Background(), benchEvent(i)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
	cancel()
	<-done
}

// BenchmarkRecordSequential is one writer at a time, as one agent's calls
// are: the latency of an event reaching the disk (Record, every commit
// synced) against reaching the log (Commit, the sync overlapping with the
// next step) and then the disk.
func BenchmarkRecordSequential(b *testing.B) {
	for _, mode := range []string{"record", "commit", "commit+durable"} {
		b.Run(mode, func(b *testing.B) {
			st, err := store.Open(filepath.Join(b.TempDir(), "b.db"))
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			r := NewRecorder(st, slog.New(slog.NewTextHandler(io.Discard, nil)))
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { r.Run(ctx); close(done) }()
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				var err error
				switch mode {
				case "record":
					err = r.Record(context.Background(), benchEvent(i))
				case "commit":
					_, err = r.Commit(context.Background(), benchEvent(i))
				default:
					var rc *Receipt
					if rc, err = r.Commit(context.Background(), benchEvent(i)); err == nil {
						err = rc.Durable(context.Background())
					}
				}
				if err != nil {
					b.Fatal(err)
				}
			}
			cancel()
			<-done
		})
	}
}

// BenchmarkVerifyMillion builds a log of one million events (in large
// batches, not timed) and times offline verification of it.
func BenchmarkVerifyMillion(b *testing.B) {
	const n = 1_000_000
	dir := b.TempDir()
	st, err := store.OpenWith(filepath.Join(dir, "v.db"), store.Options{Normal: true})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	signer, vkey, err := LoadOrCreateLogKey(filepath.Join(dir, "keys"), "bench/audit")
	if err != nil {
		b.Fatal(err)
	}
	cp := &Checkpointer{Store: st, Signer: signer, Origin: "bench/audit", Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ctx := context.Background()
	batch := make([]*Event, 0, 5000)
	for i := 0; i < n; i++ {
		batch = append(batch, benchEvent(i))
		if len(batch) == cap(batch) {
			if err := Append(ctx, st, batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
			if (i+1)%100_000 == 0 {
				if _, err := cp.Checkpoint(ctx); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	v, _ := note.NewVerifier(vkey)
	b.ResetTimer()
	for b.Loop() {
		rep, err := Verify(ctx, st, v, nil)
		if err != nil || !rep.OK() || rep.Events != n {
			b.Fatalf("verify: %v %+v", err, rep)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkEventEncode: a decision event's body, by encoding/json's
// reflection and by appendJSON (what the recorder uses).
func BenchmarkEventEncode(b *testing.B) {
	e := benchEvent(1)
	e.Seq, e.TraceID, e.SessionID, e.Labels = 41, "019ad7c4a1b2c3d4e5f60718293a4b5c", "53314ccc4cbac4bdde6049322d874dcd", []string{"untrusted_input"}
	e.Input = &Input{Roles: []string{"developer"}, Kind: "Tool", Destruct: true, OpenWorld: true, Arguments: []byte(`{"path":"/srv/docs/readme.md"}`)}
	b.Run("encoding_json", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			if _, err := json.Marshal(e); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("appendJSON", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for range b.N {
			var err error
			if buf, err = e.appendJSON(buf[:0]); err != nil {
				b.Fatal(err)
			}
		}
	})
}
