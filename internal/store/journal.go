package store

import (
	"bufio"
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The audit journal is the SQLite audit log's durable record in front of
// the events table: the single writer appends each batch of rows to it
// (one write; one fdatasync covers every batch written meanwhile) and the
// table is filled from it behind, in large transactions. SQLite's
// page-granular commits wrote a few 4 KiB pages per event; the journal
// writes the event once.
//
// It is a directory of segment files, each a sequence of frames followed
// by zeros: a segment is created at its full size, zero-filled, so that
// writing a frame does not change the file's size and its fdatasync has
// no metadata to write (on ext4 half the latency of appending):
//
//	frame   = length (uint32 LE, > 0) | crc32c(payload) (uint32 LE) | payload
//	payload = first seq (uvarint) | row count (uvarint) | next range (bytes) | rows
//	row     = time (varint, Unix ns) | type | request ID | trace ID | agent |
//	          session ID | leaf hash | body   (each bytes: uvarint length, data)
//
// Segments are named by an increasing number; a frame never spans two.
// Two locks (flock(2), so they hold between processes and between handles
// of one process): "lock" is held by the journal's owner (the gateway's
// recorder) for as long as it runs, and only the owner fills the table;
// "append.lock" is held for each frame written. A process that writes an
// event while a gateway owns the journal (the CLI) appends a frame of its
// own under append.lock; the owner reads it before its next frame (and
// every CatchUpInterval when idle). With no owner, such a process puts
// what the journal holds in the table and writes to the table directly.
// Segments whose every row is in the table, and the table synced, are
// removed.

// Journal limits.
const (
	// JournalSegmentSize is a segment's size (a frame larger than it gets
	// a segment of its own size); a frame that does not fit in the active
	// segment starts the next one, so that indexed ones can be removed.
	JournalSegmentSize = 1 << 20
	// maxFrame bounds one frame's payload when reading: a length past it
	// is damage, not data.
	maxFrame = 256 << 20
	// maxFieldLen bounds one row field when reading.
	maxFieldLen = 64 << 20
	// JournalAppendWait bounds how long a process appending to a journal
	// another one owns waits for the append lock.
	JournalAppendWait = 10 * time.Second
)

// ErrJournalLocked is returned by OpenJournal when another writer holds the
// journal past the wait.
var ErrJournalLocked = errors.New("audit journal: held by another writer")

// JournalFrame is one batch of the journal: rows numbered from
// Rows[0].Seq, and the log's state after them.
type JournalFrame struct {
	Rows []EventRow
	Next LogState
}

type segment struct {
	num     int64
	path    string
	lastSeq int64 // 0: no rows yet
}

// Journal is the audit log's append-only record. Append and Release are
// for the writer and the indexer respectively; Sync may run concurrently
// with both.
type Journal struct {
	dir      string
	lock     *os.File   // the owner's lock, held until Close
	append   *os.File   // append.lock
	appendMu sync.Mutex // held with append.lock: order appendMu, append.lock, syncMu, mu

	mu       sync.Mutex
	segments []segment // oldest first; the last is the active one
	active   *os.File
	size     int64 // bytes of frames in the active segment
	capacity int64 // the active segment's size
	buf      []byte
	failed   error // a write failed: nothing more is appended

	// syncMu orders Sync with the switch to a new segment, which syncs the
	// old one before it stops being the active one.
	syncMu     sync.Mutex
	syncFailed error
}

// JournalDir is where the journal of the SQLite database at path lives.
func JournalDir(path string) string { return path + "-audit" }

// OpenJournal opens (creating it if needed) the journal in dir and takes its
// writer's lock, waiting up to wait for another writer to release it.
// Recover must be called before Append.
func OpenJournal(dir string, wait time.Duration) (*Journal, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("audit journal: %w", err)
	}
	lock, err := lockFile(filepath.Join(dir, "lock"), wait)
	if err != nil {
		return nil, err
	}
	app, err := os.OpenFile(filepath.Join(dir, "append.lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("audit journal: %w", err)
	}
	j := &Journal{dir: dir, lock: lock, append: app}
	if j.segments, err = listSegments(dir); err != nil {
		j.Close()
		return nil, err
	}
	return j, nil
}

// lockFile opens path and takes an exclusive flock on it, trying for up to
// wait (zero: once).
func lockFile(path string, wait time.Duration) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit journal: %w", err)
	}
	if err := flockWait(f, wait); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// flockWait takes an exclusive flock on f, trying for up to wait (zero:
// once); ErrJournalLocked when another holds it past that.
func flockWait(f *os.File, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	pause := 50 * time.Microsecond
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return fmt.Errorf("audit journal: lock: %w", err)
		}
		if !time.Now().Before(deadline) {
			return fmt.Errorf("%w (%s)", ErrJournalLocked, f.Name())
		}
		time.Sleep(pause)
		pause = min(2*pause, time.Millisecond)
	}
}

// listSegments lists the segment files in dir, oldest first.
func listSegments(dir string) ([]segment, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("audit journal: %w", err)
	}
	var segs []segment
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".journal")
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(name, 10, 64)
		if err != nil || n < 0 {
			continue
		}
		segs = append(segs, segment{num: n, path: filepath.Join(dir, e.Name())})
	}
	slices.SortFunc(segs, func(a, b segment) int { return cmp.Compare(a.num, b.num) })
	return segs, nil
}

// Frames calls fn with each frame of the journal's segments in order. A
// damaged or incomplete frame ends the reading if nothing follows it in
// the journal (a write the machine's crash cut short: it was never
// synced, so never acknowledged as durable) and is an error otherwise.
func (j *Journal) Frames(fn func(JournalFrame) error) error {
	j.mu.Lock()
	segs := slices.Clone(j.segments)
	j.mu.Unlock()
	for i, s := range segs {
		last := i == len(segs)-1
		if _, err := readSegment(s.path, last, false, fn); err != nil {
			return err
		}
	}
	return nil
}

// Recover calls recover with the journal's frames (Frames), which puts
// their rows in the table, durably; then it removes every segment, starts
// a new one and calls then (if set). Other processes' appends wait until
// then returns.
func (j *Journal) Recover(recover func(frames func(func(JournalFrame) error) error) error, then func() error) error {
	return j.withAppendLock(func() error {
		if err := recover(j.Frames); err != nil {
			return err
		}
		if err := j.reset(); err != nil {
			return err
		}
		if then != nil {
			return then() // still under the append lock
		}
		return nil
	})
}

// ErrForeignFrames is returned by Reset when another process appended to
// the journal since its owner last read it: they stay for the next start.
var ErrForeignFrames = errors.New("audit journal: frames of another process not yet in the table")

// Reset empties the journal (the caller has put every row of its own in
// the table and synced it) unless another process appended meanwhile.
func (j *Journal) Reset() error {
	return j.withAppendLock(func() error {
		foreign, err := j.readForeign()
		if err != nil {
			return err
		}
		if len(foreign) > 0 {
			return ErrForeignFrames
		}
		return j.reset()
	})
}

func (j *Journal) withAppendLock(fn func() error) error {
	// flock(2) excludes other open files, not this one's other goroutines.
	j.appendMu.Lock()
	defer j.appendMu.Unlock()
	// Bounded: another process stopped while holding it (a CLI command
	// suspended) fails this batch, and its actions are denied, rather than
	// stalling every call.
	if err := flockWait(j.append, JournalAppendWait); err != nil {
		return err
	}
	defer syscall.Flock(int(j.append.Fd()), syscall.LOCK_UN)
	return fn()
}

// reset removes every segment and starts a new one. Append lock held.
func (j *Journal) reset() error {
	j.syncMu.Lock()
	defer j.syncMu.Unlock()
	j.mu.Lock()
	defer j.mu.Unlock()
	next := int64(1)
	if len(j.segments) > 0 {
		next = j.segments[len(j.segments)-1].num + 1
	}
	if j.active != nil {
		j.active.Close()
		j.active = nil
	}
	for _, s := range j.segments {
		if err := os.Remove(s.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("audit journal: %w", err)
		}
	}
	j.segments = nil
	return j.startSegment(next, 0)
}

// startSegment creates segment num, zero-filled to JournalSegmentSize (or
// need, if larger), and makes it the active one. j.mu held.
func (j *Journal) startSegment(num, need int64) error {
	path := filepath.Join(j.dir, fmt.Sprintf("%020d.journal", num))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("audit journal: %w", err)
	}
	capacity := max(JournalSegmentSize, need)
	// The zeros and the name on disk before any frame: a frame's
	// fdatasync then writes the frame alone, and another process's frame
	// synced into this segment survives with it.
	err = zeroRange(f, 0, capacity)
	if err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = syncDir(j.dir)
	}
	if err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("audit journal: new segment: %w", err)
	}
	j.active, j.size, j.capacity = f, 0, capacity
	j.segments = append(j.segments, segment{num: num, path: path})
	return nil
}

// Append writes one frame under the append lock: build is given the
// frames other processes appended since this journal's last frame (to
// apply to its state first) and returns the rows and the log's state
// after them. It returns once the frame is in the kernel's page cache
// (kept if this process dies); Sync makes it durable.
func (j *Journal) Append(build func(foreign []JournalFrame) ([]EventRow, LogState, error)) error {
	return j.underAppendLock(func(foreign []JournalFrame) error {
		rows, next, err := build(foreign)
		if err != nil {
			return err
		}
		if len(rows) == 0 {
			return ErrEmptyBatch
		}
		return j.write(rows, next)
	})
}

// CatchUp returns the frames other processes appended since this
// journal's last frame.
func (j *Journal) CatchUp() ([]JournalFrame, error) {
	var got []JournalFrame
	err := j.underAppendLock(func(foreign []JournalFrame) error { got = foreign; return nil })
	return got, err
}

func (j *Journal) underAppendLock(fn func(foreign []JournalFrame) error) error {
	return j.withAppendLock(func() error {
		foreign, err := j.readForeign()
		if err != nil {
			return err
		}
		return fn(foreign)
	})
}

// readForeign reads the frames appended to the active segment past this
// journal's own end. Append lock held.
func (j *Journal) readForeign() ([]JournalFrame, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.active == nil {
		return nil, errors.New("audit journal: no segment to append to (not reset after opening, or a write failed)")
	}
	// The common case, nobody else wrote: zeros (or the end of the file)
	// where this journal's next frame goes.
	var hdr [8]byte
	n, err := j.active.ReadAt(hdr[:], j.size)
	if err != nil && !errors.Is(err, io.EOF) {
		// Not knowing what is there, this journal must not write over it.
		return nil, fmt.Errorf("audit journal: %w", err)
	}
	if n < len(hdr) || hdr == [8]byte{} {
		return nil, nil
	}
	fi, err := j.active.Stat()
	if err != nil {
		return nil, fmt.Errorf("audit journal: %w", err)
	}
	var frames []JournalFrame
	r := bufio.NewReader(io.NewSectionReader(j.active, j.size, fi.Size()-j.size))
	for j.size < fi.Size() {
		fr, n, err := readFrame(r, fi.Size()-j.size, false)
		if errors.Is(err, io.EOF) {
			break
		}
		if errors.Is(err, errTorn) {
			// A writer that died mid-frame never reported it written: zero
			// it, so that frames after it are readable.
			if zerr := zeroRange(j.active, j.size, min(j.size+n, fi.Size())); zerr != nil {
				return nil, fmt.Errorf("audit journal: an unfinished frame at byte %d could not be cleared: %w", j.size, zerr)
			}
			break
		}
		if err != nil {
			return nil, fmt.Errorf("audit journal: another writer's frame at byte %d: %w", j.size, err)
		}
		j.size += n
		frames = append(frames, fr)
		j.segments[len(j.segments)-1].lastSeq = fr.Next.Size
	}
	return frames, nil
}

// write writes one frame after the active segment's last, starting the
// next segment first if it does not fit. Append lock held.
func (j *Journal) write(rows []EventRow, next LogState) error {
	j.mu.Lock()
	if j.failed != nil {
		j.mu.Unlock()
		return j.failed
	}
	b := append(j.buf[:0], 0, 0, 0, 0, 0, 0, 0, 0)
	b = frame(b, JournalFrame{Rows: rows, Next: next})
	if len(b)-8 > maxFrame {
		j.mu.Unlock()
		return fmt.Errorf("audit journal: a frame of %d bytes is past the limit", len(b)-8)
	}
	fits := j.size+int64(len(b)) <= j.capacity
	j.mu.Unlock()
	if !fits {
		if err := j.rotate(int64(len(b))); err != nil {
			return err
		}
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	_, err := j.active.WriteAt(b, j.size)
	if cap(b) <= 1<<20 {
		j.buf = b[:0] // kept for the next frame unless one was very large
	}
	if err != nil {
		// A partial write leaves a damaged frame that later frames would
		// follow: nothing more may be appended (the file stays open until
		// Close: Sync may be using it).
		j.failed = fmt.Errorf("audit journal: write: %w", err)
		return j.failed
	}
	j.size += int64(len(b))
	j.segments[len(j.segments)-1].lastSeq = next.Size
	return nil
}

// rotate syncs the active segment and starts the next one, of at least
// need bytes. Append lock held.
func (j *Journal) rotate(need int64) error {
	j.syncMu.Lock()
	defer j.syncMu.Unlock()
	if err := j.syncLocked(); err != nil {
		return err
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	old := j.active
	if err := j.startSegment(j.segments[len(j.segments)-1].num+1, need); err != nil {
		return err
	}
	return old.Close()
}

// Sync makes every frame appended before it durable.
func (j *Journal) Sync() error {
	j.syncMu.Lock()
	defer j.syncMu.Unlock()
	return j.syncLocked()
}

func (j *Journal) syncLocked() error {
	if j.syncFailed != nil {
		// After a failed fsync the kernel may have dropped the pages; a
		// later one succeeding proves nothing about them.
		return j.syncFailed
	}
	j.mu.Lock()
	f := j.active
	j.mu.Unlock()
	if f == nil {
		return errors.New("audit journal: no segment to sync")
	}
	if err := syscall.Fdatasync(int(f.Fd())); err != nil {
		j.syncFailed = fmt.Errorf("audit journal: sync: %w", err)
		return j.syncFailed
	}
	return nil
}

// Release removes the segments, other than the active one, whose rows are
// all at or below seq: the caller has put them in the table and synced it.
func (j *Journal) Release(seq int64) error {
	return j.withAppendLock(func() error { return j.release(seq) })
}

func (j *Journal) release(seq int64) error {
	j.mu.Lock()
	var drop []segment
	keep := j.segments[:0]
	for i, s := range j.segments {
		if i < len(j.segments)-1 && s.lastSeq <= seq {
			drop = append(drop, s)
			continue
		}
		keep = append(keep, s)
	}
	j.segments = keep
	j.mu.Unlock()
	for _, s := range drop {
		if err := os.Remove(s.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("audit journal: %w", err)
		}
	}
	return nil
}

// Segments reports how many segment files the journal has (for tests and
// metrics).
func (j *Journal) Segments() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return len(j.segments)
}

// Close closes the journal and releases its lock.
func (j *Journal) Close() error {
	j.syncMu.Lock()
	defer j.syncMu.Unlock()
	j.mu.Lock()
	defer j.mu.Unlock()
	var err error
	if j.active != nil {
		err = j.active.Close()
		j.active = nil
	}
	return errors.Join(err, j.append.Close(), j.lock.Close())
}
