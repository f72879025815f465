package store

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// The journal's format: frames, and reading them from segment files
// (journal.go describes it).

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

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
