package store_test

// The store conformance suite: writers killed part way.

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/store"
)

// startCrashHelper starts this test binary as a writer on b's database
// (crashHelper, with env added) and returns it with a scanner of the lines
// it acknowledges on.
func startCrashHelper(t *testing.T, b backend, env ...string) (*exec.Cmd, *bufio.Scanner) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), "STORE_CRASH_HELPER="+b.name, "STORE_CRASH_WHERE="+b.where), env...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, bufio.NewScanner(out)
}

// A writer killed (SIGKILL) in the middle of its batches: every batch it
// acknowledged is in the log, no batch is in it in part, and the log
// verifies and takes further appends.
func TestConformanceCrashMidBatch(t *testing.T) {
	conform(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		cmd, sc := startCrashHelper(t, b)
		var acked int64
		for sc.Scan() {
			n, err := strconv.ParseInt(strings.TrimPrefix(sc.Text(), "committed "), 10, 64)
			if err != nil {
				t.Fatalf("helper said %q", sc.Text())
			}
			acked = n
			if acked >= 3*crashBatch {
				// Kill it while it writes its next batch.
				time.Sleep(time.Duration(acked%7) * time.Millisecond)
				cmd.Process.Signal(syscall.SIGKILL)
				break
			}
		}
		cmd.Wait()
		if acked < 3*crashBatch {
			t.Fatalf("helper acknowledged %d events", acked)
		}
		s := b.open(t)
		st, err := s.State(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.Size < acked || st.Size%crashBatch != 0 {
			t.Fatalf("log of %d events after %d acknowledged (batches of %d)", st.Size, acked, crashBatch)
		}
		rows, _ := s.Events(ctx, store.EventQuery{AfterSeq: st.Size - 1})
		if len(rows) != 1 || rows[0].Seq != st.Size {
			t.Fatalf("last row %+v", rows)
		}
		verify(t, s)
		if err := audit.Append(ctx, s, events(1, time.Now(), "after-crash")); err != nil {
			t.Fatal(err)
		}
		verify(t, s)
	})
}

const crashBatch = 500

// crashHelper appends batches until it is killed, saying what committed.
func crashHelper() {
	ctx := context.Background()
	s, err := openStore(os.Getenv("STORE_CRASH_HELPER"), os.Getenv("STORE_CRASH_WHERE"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	for i := 0; ; i++ {
		if err := audit.Append(ctx, s, events(crashBatch, time.Now(), fmt.Sprintf("batch-%d", i))); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		st, err := s.State(ctx)
		if err != nil {
			os.Exit(2)
		}
		fmt.Printf("committed %d\n", st.Size)
	}
}

// The audit recorder killed (SIGKILL) under load: every event whose
// Record returned (durable: on SQLite the log writer's fsync, on
// PostgreSQL the asynchronous commit and the flush after it) is in the
// log, and the log verifies.
func TestConformanceCrashRecorder(t *testing.T) {
	conform(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		cmd, sc := startCrashHelper(t, b, "STORE_CRASH_RECORDER=1")
		var acked []string
		for sc.Scan() {
			acked = append(acked, sc.Text())
			if len(acked) == 300 {
				cmd.Process.Signal(syscall.SIGKILL)
				break
			}
		}
		cmd.Wait()
		if len(acked) < 300 {
			t.Fatalf("the recorder acknowledged %d events", len(acked))
		}
		s := b.open(t)
		for _, id := range acked {
			rows, err := s.Events(ctx, store.EventQuery{RequestID: id})
			if err != nil || len(rows) != 1 {
				t.Fatalf("acknowledged event %s: %d rows, %v", id, len(rows), err)
			}
		}
		verify(t, s)
	})
}

// crashRecorder records events from 16 writers until it is killed, printing
// each request ID once Record returned.
func crashRecorder() {
	s, err := openStore(os.Getenv("STORE_CRASH_HELPER"), os.Getenv("STORE_CRASH_WHERE"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	r := audit.NewRecorder(s, slog.New(slog.NewTextHandler(io.Discard, nil)))
	go r.Run(context.Background())
	var mu sync.Mutex
	for w := 0; w < 16; w++ {
		go func() {
			for i := 0; ; i++ {
				e := audit.Decision(audit.TypeDecision, time.Now(), audit.Subject{Agent: "a"}, "tools/call")
				e.RequestID = fmt.Sprintf("w%d-%d", w, i)
				if err := r.Record(context.Background(), e); err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(2)
				}
				mu.Lock()
				fmt.Println(e.RequestID)
				mu.Unlock()
			}
		}()
	}
	select {}
}
