package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// journalRows makes n rows numbered from first (leaf hashes are not
// checked at this level).
func journalRows(first int64, n int) []EventRow {
	rows := make([]EventRow, n)
	for i := range rows {
		seq := first + int64(i)
		rows[i] = EventRow{Seq: seq, Time: time.Unix(0, 1_700_000_000_000_000_000+seq), Type: "decision",
			RequestID: fmt.Sprintf("req-%d", seq), TraceID: "t", Agent: "agent", SessionID: "s",
			LeafHash: bytes.Repeat([]byte{byte(seq)}, 32), Body: []byte(fmt.Sprintf(`{"seq":%d}`, seq))}
	}
	return rows
}

func stateAt(size int64) LogState {
	return LogState{Size: size, Range: bytes.Repeat([]byte{byte(size)}, 32)}
}

func TestJournalFrameRoundTrip(t *testing.T) {
	rows := journalRows(7, 3)
	rows[1].Body = nil // pruned bodies are not journalled, but must not break the codec
	rows[2].SessionID = ""
	fr := JournalFrame{Rows: rows, Next: stateAt(9)}
	got, err := DecodeJournalFrame(AppendJournalFrame(nil, fr))
	if err != nil {
		t.Fatal(err)
	}
	if got.Next.Size != 9 || !bytes.Equal(got.Next.Range, fr.Next.Range) || len(got.Rows) != 3 {
		t.Fatalf("next %+v, %d rows", got.Next, len(got.Rows))
	}
	for i, r := range got.Rows {
		w := rows[i]
		if r.Seq != w.Seq || !r.Time.Equal(w.Time) || r.Type != w.Type || r.RequestID != w.RequestID || r.TraceID != w.TraceID ||
			r.Agent != w.Agent || r.SessionID != w.SessionID || !bytes.Equal(r.LeafHash, w.LeafHash) || !bytes.Equal(r.Body, w.Body) {
			t.Errorf("row %d: %+v, want %+v", i, r, w)
		}
	}
	for _, bad := range [][]byte{nil, {0}, {1, 0}, {1, 1, 0}, append(AppendJournalFrame(nil, fr), 0)} {
		if _, err := DecodeJournalFrame(bad); err == nil {
			t.Errorf("decoded %x", bad)
		}
	}
}

func FuzzJournalFrame(f *testing.F) {
	f.Add(AppendJournalFrame(nil, JournalFrame{Rows: journalRows(1, 2), Next: stateAt(2)}))
	f.Add([]byte{1, 1, 0, 0})
	f.Fuzz(func(t *testing.T, p []byte) {
		fr, err := DecodeJournalFrame(p)
		if err != nil {
			return
		}
		again, err := DecodeJournalFrame(AppendJournalFrame(nil, fr))
		if err != nil || len(again.Rows) != len(fr.Rows) || again.Next.Size != fr.Next.Size {
			t.Fatalf("re-decoded %d rows (%v), had %d", len(again.Rows), err, len(fr.Rows))
		}
	})
}

// openOwned opens a fresh journal as its owner would.
func openOwned(t *testing.T, dir string) *Journal {
	t.Helper()
	j, err := OpenJournal(dir, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Recover(func(func(func(JournalFrame) error) error) error { return nil }, nil); err != nil {
		t.Fatal(err)
	}
	return j
}

func appendRows(t *testing.T, j *Journal, first int64, n int) {
	t.Helper()
	if err := j.Append(func(foreign []JournalFrame) ([]EventRow, LogState, error) {
		if len(foreign) != 0 {
			t.Fatalf("%d foreign frames", len(foreign))
		}
		return journalRows(first, n), stateAt(first + int64(n) - 1), nil
	}); err != nil {
		t.Fatal(err)
	}
}

func readAll(t *testing.T, j *Journal) ([]JournalFrame, error) {
	t.Helper()
	var frames []JournalFrame
	err := j.Frames(func(fr JournalFrame) error { frames = append(frames, fr); return nil })
	return frames, err
}

// A frame cut short at the end of the journal (the machine crashed during
// a write that was never synced) ends the reading; damage with frames
// after it is an error, never skipped.
func TestJournalTornTail(t *testing.T) {
	dir := t.TempDir()
	j := openOwned(t, dir)
	appendRows(t, j, 1, 2)
	appendRows(t, j, 3, 1)
	if err := j.Sync(); err != nil {
		t.Fatal(err)
	}
	seg, end := j.segments[0].path, int(j.size)
	j.Close()
	whole, _ := os.ReadFile(seg)
	if len(whole) != JournalSegmentSize {
		t.Fatalf("segment of %d bytes", len(whole))
	}
	for cut := 1; cut < 12; cut++ {
		// The last frame's end never reached the disk.
		torn := bytes.Clone(whole)
		clear(torn[end-cut : end])
		if err := os.WriteFile(seg, torn, 0o600); err != nil {
			t.Fatal(err)
		}
		j, err := OpenJournal(dir, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		frames, err := readAll(t, j)
		j.Close()
		if err != nil || len(frames) != 1 || frames[0].Next.Size != 2 {
			t.Fatalf("cut %d: %d frames, %v", cut, len(frames), err)
		}
	}
	// A flipped byte in the first frame, the second intact after it.
	damaged := bytes.Clone(whole)
	damaged[12] ^= 0xff
	if err := os.WriteFile(seg, damaged, 0o600); err != nil {
		t.Fatal(err)
	}
	j, err := OpenJournal(dir, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if _, err := readAll(t, j); err == nil {
		t.Fatal("damage in the middle of the journal was read past")
	}
}

// One owner at a time; another process appends its own frames under the
// append lock, which the owner reads before its next frame; segments
// rotate and indexed ones are released.
func TestJournalOwnerAndForeignWriters(t *testing.T) {
	dir := t.TempDir()
	j := openOwned(t, dir)
	defer j.Close()
	if _, err := OpenJournal(dir, 20*time.Millisecond); !errors.Is(err, ErrJournalLocked) {
		t.Fatalf("second owner: %v", err)
	}
	appendRows(t, j, 1, 2)
	// Another process: the journal's last frame is its state.
	err := AppendForeign(dir, func(st LogState) ([]EventRow, LogState, error) {
		if st.Size != 2 {
			t.Errorf("foreign writer built on %d", st.Size)
		}
		return journalRows(3, 1), stateAt(3), nil
	}, func() (LogState, error) { t.Error("table read with frames in the journal"); return LogState{}, nil })
	if err != nil {
		t.Fatal(err)
	}
	var seen []JournalFrame
	if err := j.Append(func(foreign []JournalFrame) ([]EventRow, LogState, error) {
		seen = foreign
		return journalRows(4, 1), stateAt(4), nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 1 || seen[0].Rows[0].RequestID != "req-3" {
		t.Fatalf("foreign frames %+v", seen)
	}
	if more, err := j.CatchUp(); err != nil || len(more) != 0 {
		t.Fatalf("caught up again: %d, %v", len(more), err)
	}
	frames, err := readAll(t, j)
	if err != nil || len(frames) != 3 || frames[2].Next.Size != 4 {
		t.Fatalf("%d frames, %v", len(frames), err)
	}
	// A foreign frame in front of a reset is kept for the next start.
	if err := AppendForeign(dir, func(LogState) ([]EventRow, LogState, error) { return journalRows(5, 1), stateAt(5), nil },
		func() (LogState, error) { return LogState{}, nil }); err != nil {
		t.Fatal(err)
	}
	if err := j.Reset(); !errors.Is(err, ErrForeignFrames) {
		t.Fatalf("reset over a foreign frame: %v", err)
	}
	if _, err := j.CatchUp(); err != nil {
		t.Fatal(err)
	}
	// Rotation: a large frame fills the segment.
	big := journalRows(6, 1)
	big[0].Body = bytes.Repeat([]byte("x"), JournalSegmentSize)
	if err := j.Append(func([]JournalFrame) ([]EventRow, LogState, error) { return big, stateAt(6), nil }); err != nil {
		t.Fatal(err)
	}
	appendRows(t, j, 7, 1)
	// 1-5, the large frame in a segment of its size, 7.
	if j.Segments() != 3 {
		t.Fatalf("%d segments after a large frame", j.Segments())
	}
	if err := j.Release(4); err != nil || j.Segments() != 3 {
		t.Fatalf("released a segment with unindexed rows: %d, %v", j.Segments(), err)
	}
	if err := j.Release(6); err != nil || j.Segments() != 1 {
		t.Fatalf("after release: %d segments, %v", j.Segments(), err)
	}
	frames, err = readAll(t, j)
	if err != nil || len(frames) != 1 || frames[0].Rows[0].Seq != 7 {
		t.Fatalf("after release: %d frames, %v", len(frames), err)
	}
	// The owner's lock is released by Close.
	j.Close()
	j2, err := OpenJournal(dir, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	j2.Close()
}

// A damaged frame a foreign writer left (it died mid-write, never
// acknowledging) is cut off by the owner, and later frames are readable.
func TestJournalForeignTornFrameIsCut(t *testing.T) {
	dir := t.TempDir()
	j := openOwned(t, dir)
	defer j.Close()
	appendRows(t, j, 1, 1)
	f, err := os.OpenFile(j.segments[0].path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte{200, 0, 0, 0, 1, 2}, j.size)
	f.Close()
	appendRows(t, j, 2, 1)
	frames, err := readAll(t, j)
	if err != nil || len(frames) != 2 || frames[1].Rows[0].Seq != 2 {
		t.Fatalf("%d frames, %v", len(frames), err)
	}
}

// storeWithOwnedJournal opens a store and its journal as the journal's
// owner would. The rows these tests write have hashes that are not a
// tree's: the audit package's check (and its test) is not their subject,
// so it is off until the test ends. Not for parallel tests: the check is
// restored before parallel tests run.
func storeWithOwnedJournal(t *testing.T) (*DB, *Journal) {
	t.Helper()
	saved := journalCheck.Swap(nil)
	t.Cleanup(func() { journalCheck.Store(saved) })
	path := filepath.Join(t.TempDir(), "p.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, openOwned(t, JournalDir(path))
}

// Frames a writer left in the journal (it died before putting them in
// the table) are put there by the next reader of the log when no process
// owns the journal; while one does, readers wait for it.
func TestJournalRecoveredByReaders(t *testing.T) {
	s, j := storeWithOwnedJournal(t)
	appendRows(t, j, 1, 3)
	// While a writer owns it, a reader waits for the table to reach the
	// journal's end (here it never does: nothing indexes).
	short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if st, err := s.State(short); err == nil {
		t.Fatalf("state while owned and not indexed: %+v", st)
	}
	j.Close() // the owner dies
	st, err := s.State(context.Background())
	if err != nil || st.Size != 3 {
		t.Fatalf("state after the owner stopped: %+v, %v", st, err)
	}
	rows, err := s.Events(context.Background(), EventQuery{RequestID: "req-2"})
	if err != nil || len(rows) != 1 || string(rows[0].Body) != `{"seq":2}` {
		t.Fatalf("recovered rows %+v, %v", rows, err)
	}
	// Direct appends after it continue the log.
	err = s.AppendLog(context.Background(), func(st LogState) ([]EventRow, LogState, error) {
		return journalRows(st.Size+1, 1), stateAt(st.Size + 1), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := s.State(context.Background()); st.Size != 4 {
		t.Fatalf("size %d", st.Size)
	}
}

// The owner's writer, its indexer releasing segments and another
// process's writer, all at once: every frame each was told is written is
// in the journal, in order, once.
func TestJournalConcurrentWritersKeepEveryFrame(t *testing.T) {
	dir := t.TempDir()
	j := openOwned(t, dir)
	defer j.Close()
	const each = 200
	var last int64 // the owner's view of the log's size
	stop := make(chan struct{})
	released := make(chan struct{})
	go func() {
		defer close(released)
		for {
			select {
			case <-stop:
				return
			default:
				j.Release(0) // takes the append lock from another goroutine
			}
		}
	}()
	foreign := make(chan error, 1)
	go func() {
		for range each {
			err := AppendForeign(dir, func(st LogState) ([]EventRow, LogState, error) {
				return journalRows(st.Size+1, 1), stateAt(st.Size + 1), nil
			}, func() (LogState, error) { return LogState{}, nil })
			if err != nil {
				foreign <- err
				return
			}
		}
		foreign <- nil
	}()
	for range each {
		err := j.Append(func(fs []JournalFrame) ([]EventRow, LogState, error) {
			for _, f := range fs {
				if f.Rows[0].Seq != last+1 {
					t.Errorf("foreign frame %d after %d", f.Rows[0].Seq, last)
				}
				last = f.Next.Size
			}
			last++
			return journalRows(last, 1), stateAt(last), nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := <-foreign; err != nil {
		t.Fatal(err)
	}
	close(stop)
	<-released
	frames, err := readAll(t, j)
	if err != nil || len(frames) != 2*each {
		t.Fatalf("%d frames, %v; want %d", len(frames), err, 2*each)
	}
	for i, f := range frames {
		if f.Rows[0].Seq != int64(i+1) {
			t.Fatalf("frame %d holds event %d", i, f.Rows[0].Seq)
		}
	}
}

// A segment whose last frame leaves fewer zero bytes than a header's at
// its end is whole, not damaged, when the next segment follows.
func TestJournalSegmentNearlyFull(t *testing.T) {
	dir := t.TempDir()
	j := openOwned(t, dir)
	defer j.Close()
	seq := int64(1)
	for leave := 1; leave < 8; leave++ {
		first := seq
		rows := journalRows(first, 1)
		room := int(j.capacity-j.size) - leave
		found := false
		for n := room; n >= 0 && !found; n-- {
			rows[0].Body = make([]byte, n)
			found = 8+len(AppendJournalFrame(nil, JournalFrame{Rows: rows, Next: stateAt(first)})) == room
		}
		if !found {
			t.Fatalf("no body fills the segment to %d bytes of its end", leave)
		}
		seq += 2
		if err := j.Append(func([]JournalFrame) ([]EventRow, LogState, error) { return rows, stateAt(first), nil }); err != nil {
			t.Fatal(err)
		}
		if j.capacity-j.size != int64(leave) {
			t.Fatalf("left %d bytes, want %d", j.capacity-j.size, leave)
		}
		appendRows(t, j, first+1, 1) // starts the next segment
		if _, err := readAll(t, j); err != nil {
			t.Fatalf("leaving %d bytes: %v", leave, err)
		}
	}
}

// Recovery puts many frames in the table in few transactions (a crash
// under load can leave tens of thousands of events), across the batch
// bound, and every row arrives once, in order.
func TestJournalRecoveryInBatches(t *testing.T) {
	s, j := storeWithOwnedJournal(t)
	const frames, per = 5, 1000 // more than recoverBatch in all
	for f := range frames {
		appendRows(t, j, int64(f*per+1), per)
	}
	j.Close()
	st, err := s.State(context.Background())
	if err != nil || st.Size != frames*per {
		t.Fatalf("state %+v, %v", st.Size, err)
	}
	rows, err := s.Events(context.Background(), EventQuery{AfterSeq: 0, Limit: MaxQueryLimit})
	if err != nil || len(rows) != frames*per {
		t.Fatalf("%d rows, %v", len(rows), err)
	}
	for i, r := range rows {
		if r.Seq != int64(i+1) || r.RequestID != fmt.Sprintf("req-%d", i+1) {
			t.Fatalf("row %d: %+v", i, r)
		}
	}
}

// A segment that cannot be read (here a directory where a segment file
// should be) counts as holding frames: a reader does not skip recovery
// or its wait as if the journal were empty.
func TestUnreadableSegmentCountsAsHoldingFrames(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "1.journal")
	if err := os.WriteFile(empty, make([]byte, 64), 0o600); err != nil {
		t.Fatal(err)
	}
	if hasFrames(empty) {
		t.Fatal("a zero-filled segment holds frames")
	}
	bad := filepath.Join(dir, "2.journal")
	if err := os.Mkdir(bad, 0o700); err != nil {
		t.Fatal(err)
	}
	if !hasFrames(bad) {
		t.Fatal("an unreadable segment was taken for an empty one")
	}
}

// A recovered journal is emptied only once the table that holds its rows
// is on disk, also when every frame was in the table already: the stopped
// owner's indexer put them there with commits that are not fsynced, and
// the journal was their only copy on disk. (Not parallel: it counts the
// calls of a package variable.)
func TestRecoveryMakesTheTableDurableBeforeEmptyingTheJournal(t *testing.T) {
	ctx := context.Background()
	s, j := storeWithOwnedJournal(t)
	appendRows(t, j, 1, 3)
	// Indexed, as the owner's indexer does, then the owner dies.
	w, err := s.LogWriter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.Append(ctx, LogState{}, journalRows(1, 3), stateAt(3)); err != nil {
		t.Fatal(err)
	}
	j.Close()
	saved := recoverSync
	defer func() { recoverSync = saved }()
	synced := 0
	recoverSync = func(path string) error { synced++; return saved(path) }
	if st, err := s.State(ctx); err != nil || st.Size != 3 {
		t.Fatalf("state after recovery: %+v, %v", st, err)
	}
	if synced == 0 {
		t.Error("the journal was emptied without the table being synced")
	}
	if segs, _ := filepath.Glob(filepath.Join(JournalDir(s.path), "*.journal")); len(segs) > 0 {
		for _, seg := range segs {
			if b, _ := os.ReadFile(seg); len(bytes.Trim(b, "\x00")) > 0 {
				t.Errorf("journal segment %s still holds frames after recovery", seg)
			}
		}
	}
}
