package store

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
)

// The journal seen from a process that does not own it: a CLI command,
// a reader, or a gateway on a data directory another gateway owns.

// hasFrames reports whether the segment at path begins with a frame (an
// unreadable one counts: recovery says what is wrong with it).
func hasFrames(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return !errors.Is(err, os.ErrNotExist) // removed: indexed
	}
	defer f.Close()
	var hdr [8]byte
	n, err := f.ReadAt(hdr[:], 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return true
	}
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
	n, err := f.ReadAt(hdr[:], end)
	if err != nil && !errors.Is(err, io.EOF) {
		// Not knowing what is there, this process must not write over it.
		return fmt.Errorf("audit journal: %w", err)
	}
	if n > 0 && hdr != [8]byte{} {
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
