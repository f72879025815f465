package store

import (
	"bufio"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
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

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

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
// Frames must be read, and Reset called, before Append.
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

// readSegment reads the frames of one segment (with headOnly, only each
// frame's Next: its rows are checked against the checksum, not decoded)
// and returns where they end.
func readSegment(path string, last, headOnly bool, fn func(JournalFrame) error) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("audit journal: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("audit journal: %w", err)
	}
	r := bufio.NewReaderSize(f, 64<<10)
	var off int64
	for {
		fr, n, err := readFrame(r, fi.Size()-off, headOnly)
		if errors.Is(err, io.EOF) {
			return off, nil
		}
		if err != nil {
			if errors.Is(err, errTorn) && last && zeroFrom(f, off+n, fi.Size()) {
				return off, nil // a torn tail: never synced
			}
			return 0, fmt.Errorf("audit journal: %s at byte %d: %w", filepath.Base(path), off, err)
		}
		off += n
		if err := fn(fr); err != nil {
			return 0, err
		}
	}
}

// zeroFrom reports whether f holds only zeros from off to end.
func zeroFrom(f *os.File, off, end int64) bool {
	buf := make([]byte, 64<<10)
	for off < end {
		n, err := f.ReadAt(buf[:min(int64(len(buf)), end-off)], off)
		for _, c := range buf[:n] {
			if c != 0 {
				return false
			}
		}
		off += int64(n)
		if err != nil {
			return off >= end
		}
	}
	return true
}

// Errors of readFrame. errTorn is a frame whose bytes are not all there
// (its checksum fails): a write that did not finish, if nothing follows
// it. errDamaged is anything else a frame cannot be.
var (
	errTorn    = errors.New("incomplete frame (checksum mismatch)")
	errDamaged = errors.New("damaged frame header")
)

// readFrame reads one frame of at most left bytes. n is how far the frame
// claims to reach (for a damaged one, how far it would).
func readFrame(r io.Reader, left int64, headOnly bool) (JournalFrame, int64, error) {
	var hdr [8]byte
	n, err := io.ReadFull(r, hdr[:])
	if hdr == [8]byte{} {
		// The zeros after the last frame (fewer than a header's at the
		// segment's end when the last frame nearly filled it).
		return JournalFrame{}, 0, io.EOF
	}
	if err != nil {
		return JournalFrame{}, int64(n), errDamaged
	}
	size := int64(binary.LittleEndian.Uint32(hdr[:4]))
	if size == 0 || size > maxFrame || 8+size > left {
		// A header is written with its frame's first bytes: a length that
		// is not a frame's is damage, not an unfinished write.
		return JournalFrame{}, 8, errDamaged
	}
	payload := make([]byte, size)
	if _, err := io.ReadFull(r, payload); err != nil {
		return JournalFrame{}, 8 + size, errTorn
	}
	if crc32.Checksum(payload, castagnoli) != binary.LittleEndian.Uint32(hdr[4:]) {
		return JournalFrame{}, 8 + size, errTorn
	}
	if headOnly {
		next, err := decodeFrameHead(payload)
		return JournalFrame{Next: next}, 8 + size, err
	}
	fr, err := DecodeJournalFrame(payload)
	return fr, 8 + size, err
}

// decodeFrameHead decodes the log's state after a frame.
func decodeFrameHead(p []byte) (LogState, error) {
	_, _, next, err := frameHead(&decoder{p: p})
	return next, err
}

// frameHead reads a frame payload's header: its first event's number, how
// many events it holds, and the log's state after them.
func frameHead(d *decoder) (first, count uint64, next LogState, err error) {
	first = d.uvarint()
	count = d.uvarint()
	rng := d.bytes()
	if d.err == nil && (first < 1 || first > 1<<62 || count < 1 || count > uint64(len(rng)+len(d.p)+16)) {
		d.err = errors.New("bad frame header")
	}
	if d.err != nil {
		return 0, 0, LogState{}, fmt.Errorf("audit journal frame: %w", d.err)
	}
	return first, count, LogState{Size: int64(first + count - 1), Range: slices.Clone(rng)}, nil
}

// DecodeJournalFrame decodes one frame's payload.
func DecodeJournalFrame(p []byte) (JournalFrame, error) {
	d := decoder{p: p}
	first, count, next, err := frameHead(&d)
	if err != nil {
		return JournalFrame{}, err
	}
	fr := JournalFrame{Rows: make([]EventRow, 0, count)}
	for i := uint64(0); i < count && d.err == nil; i++ {
		r := EventRow{Seq: int64(first + i)}
		r.Time = time.Unix(0, d.varint())
		r.Type = string(d.bytes())
		r.RequestID = string(d.bytes())
		r.TraceID = string(d.bytes())
		r.Agent = string(d.bytes())
		r.SessionID = string(d.bytes())
		r.LeafHash = slices.Clone(d.bytes())
		r.Body = slices.Clone(d.bytes())
		fr.Rows = append(fr.Rows, r)
	}
	if d.err == nil && len(d.p) != 0 {
		d.err = errors.New("trailing bytes")
	}
	if d.err != nil {
		return JournalFrame{}, fmt.Errorf("audit journal frame: %w", d.err)
	}
	fr.Next = next
	return fr, nil
}

type decoder struct {
	p   []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.p)
	if n <= 0 {
		d.err = errors.New("bad varint")
		return 0
	}
	d.p = d.p[n:]
	return v
}

// varint decodes binary.AppendVarint's zig-zag encoding.
func (d *decoder) varint() int64 {
	u := d.uvarint()
	return int64(u>>1) ^ -int64(u&1)
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > maxFieldLen || n > uint64(len(d.p)) {
		d.err = errors.New("field past the frame")
		return nil
	}
	b := d.p[:n]
	d.p = d.p[n:]
	return b
}

// AppendJournalFrame appends fr's payload to b.
func AppendJournalFrame(b []byte, fr JournalFrame) []byte {
	b = binary.AppendUvarint(b, uint64(fr.Rows[0].Seq))
	b = binary.AppendUvarint(b, uint64(len(fr.Rows)))
	b = appendField(b, fr.Next.Range)
	for i := range fr.Rows {
		r := &fr.Rows[i]
		b = binary.AppendVarint(b, r.Time.UnixNano())
		b = appendField(b, r.Type)
		b = appendField(b, r.RequestID)
		b = appendField(b, r.TraceID)
		b = appendField(b, r.Agent)
		b = appendField(b, r.SessionID)
		b = appendField(b, r.LeafHash)
		b = appendField(b, r.Body)
	}
	return b
}

func appendField[T string | []byte](b []byte, v T) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
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
	if n, _ := j.active.ReadAt(hdr[:], j.size); n < len(hdr) || hdr == [8]byte{} {
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

var zeros = make([]byte, 64<<10)

// zeroRange writes zeros over f from off to end.
func zeroRange(f *os.File, off, end int64) error {
	for off < end {
		n, err := f.WriteAt(zeros[:min(int64(len(zeros)), end-off)], off)
		if err != nil {
			return err
		}
		off += int64(n)
	}
	return nil
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

// frame appends fr, framed, to b, whose 8 bytes past len(b)-8 are the
// header's room.
func frame(b []byte, fr JournalFrame) []byte {
	h := len(b) - 8
	b = AppendJournalFrame(b, fr)
	payload := b[h+8:]
	binary.LittleEndian.PutUint32(b[h:], uint32(len(payload)))
	binary.LittleEndian.PutUint32(b[h+4:], crc32.Checksum(payload, castagnoli))
	return b
}

// hasFrames reports whether the segment at path begins with a frame (an
// unreadable one counts: recovery says what is wrong with it).
func hasFrames(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	var hdr [8]byte
	n, _ := f.ReadAt(hdr[:], 0)
	return n > 0 && hdr != [8]byte{}
}

// lastState is the log's state after the last frame of segs (found is
// false when they hold none), and where the last segment's frames end.
func lastState(segs []segment) (st LogState, found bool, end int64, err error) {
	for i, sg := range segs {
		end, err = readSegment(sg.path, i == len(segs)-1, true, func(fr JournalFrame) error { st, found = fr.Next, true; return nil })
		if err != nil {
			return LogState{}, false, 0, err
		}
	}
	return st, found, end, nil
}

// JournalEnd is the log's size at the end of the journal in dir (zero
// when it holds no frame): what a reader must wait for the table to
// reach.
func JournalEnd(dir string) (int64, error) {
	app, err := lockFile(filepath.Join(dir, "append.lock"), JournalAppendWait)
	if err != nil {
		return 0, err
	}
	defer app.Close()
	segs, err := listSegments(dir)
	if err != nil {
		return 0, err
	}
	st, _, _, err := lastState(segs)
	return st.Size, err
}

// AppendForeign appends one frame to the journal in dir, owned by another
// writer (a running gateway), and syncs it: build is given the log's
// state (the journal's last frame, or tableState when it has none).
func AppendForeign(dir string, build func(LogState) ([]EventRow, LogState, error), tableState func() (LogState, error)) error {
	app, err := lockFile(filepath.Join(dir, "append.lock"), JournalAppendWait)
	if err != nil {
		return err
	}
	defer app.Close()
	segs, err := listSegments(dir)
	if err != nil {
		return err
	}
	if len(segs) == 0 {
		return errors.New("audit journal: its owner has no segment open")
	}
	st, found, end, err := lastState(segs)
	if err != nil {
		return err
	}
	if !found {
		if st, err = tableState(); err != nil {
			return err
		}
	}
	rows, next, err := build(st)
	if err != nil {
		return err
	}
	if len(rows) == 0 {
		return ErrEmptyBatch
	}
	if rows[0].Seq != st.Size+1 || next.Size != st.Size+int64(len(rows)) {
		return fmt.Errorf("append events: rows numbered from %d for a log of %d", rows[0].Seq, st.Size)
	}
	f, err := os.OpenFile(segs[len(segs)-1].path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("audit journal: %w", err)
	}
	defer f.Close()
	// An unfinished frame where this one goes (its writer died) is cleared
	// first: a shorter frame must not leave its bytes behind it.
	var hdr [8]byte
	if n, _ := f.ReadAt(hdr[:], end); n > 0 && hdr != [8]byte{} {
		fi, err := f.Stat()
		if err != nil {
			return fmt.Errorf("audit journal: %w", err)
		}
		if err := zeroRange(f, end, fi.Size()); err != nil {
			return fmt.Errorf("audit journal: clearing an unfinished frame: %w", err)
		}
	}
	// Past the segment's size if it does not fit: the owner starts the
	// next one before its own next frame.
	if _, err := f.WriteAt(frame(make([]byte, 8, 1024), JournalFrame{Rows: rows, Next: next}), end); err != nil {
		return fmt.Errorf("audit journal: write: %w", err)
	}
	if err := syscall.Fdatasync(int(f.Fd())); err != nil {
		return fmt.Errorf("audit journal: sync: %w", err)
	}
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
