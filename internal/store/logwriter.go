package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// ErrLogMoved is returned by LogWriter.Append when another writer (another
// process) appended since the state the caller built on: reload the state
// and build again.
var ErrLogMoved = errors.New("append events: the log moved on")

// LogWriter is the audit log's single in-process writer. It holds one
// connection with prepared statements, commits batches without waiting for
// the disk (synchronous=NORMAL on its connection only) and makes them
// durable with Sync, which fsyncs the write-ahead log: committing the next
// batch overlaps with syncing the last. Not safe for concurrent use.
type LogWriter struct {
	s        *DB
	conn     *sql.Conn
	begin    *sql.Stmt
	commit   *sql.Stmt
	rollback *sql.Stmt
	insert   *sql.Stmt
	update   *sql.Stmt
	create   *sql.Stmt
	state    *sql.Stmt
	walPath  string
	syncMu   sync.Mutex
	walInode uint64
}

// LogWriter opens the log writer. Close it before closing the store.
func (s *DB) LogWriter(ctx context.Context) (*LogWriter, error) {
	if s.dialect != sqlite {
		return nil, ErrNoLogWriter
	}
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("log writer: %w", err)
	}
	w := &LogWriter{s: s, conn: conn, walPath: s.path + "-wal"}
	if _, err := conn.ExecContext(ctx, "PRAGMA synchronous=NORMAL"); err != nil {
		conn.Close()
		return nil, fmt.Errorf("log writer: %w", err)
	}
	for _, p := range []struct {
		stmt **sql.Stmt
		sql  string
	}{
		// Transactions are statements on the writer's own connection:
		// database/sql re-prepares a connection's statements inside a Tx.
		{&w.begin, `BEGIN IMMEDIATE`},
		{&w.commit, `COMMIT`},
		{&w.rollback, `ROLLBACK`},
		{&w.insert, `INSERT INTO events(` + eventColumns + `) VALUES (?,?,?,?,?,?,?,?,?)`},
		{&w.update, `UPDATE log_state SET size = ?, range = ? WHERE id = 1 AND size = ?`},
		{&w.create, `INSERT INTO log_state(id, size, range) SELECT 1, ?, ? WHERE NOT EXISTS (SELECT 1 FROM log_state)`},
		{&w.state, `SELECT size, range FROM log_state WHERE id = 1`},
	} {
		if *p.stmt, err = conn.PrepareContext(ctx, p.sql); err != nil {
			w.Close()
			return nil, fmt.Errorf("log writer: prepare: %w", err)
		}
	}
	return w, nil
}

// Close releases the writer's connection.
func (w *LogWriter) Close() error {
	for _, st := range []*sql.Stmt{w.begin, w.commit, w.rollback, w.insert, w.update, w.create, w.state} {
		if st != nil {
			st.Close()
		}
	}
	return w.conn.Close()
}

// State reads the log's current state.
func (w *LogWriter) State(ctx context.Context) (LogState, error) {
	var st LogState
	err := w.state.QueryRowContext(ctx).Scan(&st.Size, &st.Range)
	if errors.Is(err, sql.ErrNoRows) {
		return LogState{}, nil
	}
	if err != nil {
		return LogState{}, fmt.Errorf("read log state: %w", err)
	}
	return st, nil
}

// Append commits rows (numbered from from.Size+1) and the new state next in
// one transaction, provided the log is still at from; otherwise nothing is
// written and it returns ErrLogMoved. The commit survives a crash of this
// process; Sync makes it survive a crash of the machine.
func (w *LogWriter) Append(ctx context.Context, from LogState, rows []EventRow, next LogState) error {
	if len(rows) == 0 {
		return ErrEmptyBatch
	}
	if rows[0].Seq != from.Size+1 || next.Size != from.Size+int64(len(rows)) {
		return fmt.Errorf("append events: rows numbered from %d for a log of %d", rows[0].Seq, from.Size)
	}
	if _, err := w.begin.ExecContext(ctx); err != nil {
		return fmt.Errorf("append events: begin: %w", err)
	}
	if err := w.appendTx(ctx, from, rows, next); err != nil {
		if _, rerr := w.rollback.ExecContext(ctx); rerr != nil {
			return errors.Join(err, fmt.Errorf("append events: rollback: %w", rerr))
		}
		return err
	}
	return nil
}

func (w *LogWriter) appendTx(ctx context.Context, from LogState, rows []EventRow, next LogState) error {
	res, err := w.update.ExecContext(ctx, next.Size, next.Range, from.Size)
	if err != nil {
		return fmt.Errorf("append events: write log state: %w", err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		if from.Size != 0 {
			return ErrLogMoved
		}
		res, err := w.create.ExecContext(ctx, next.Size, next.Range)
		if err != nil {
			return fmt.Errorf("append events: write log state: %w", err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return ErrLogMoved
		}
	}
	for i := range rows {
		r := &rows[i]
		if _, err := w.insert.ExecContext(ctx, r.Seq, r.Time.UnixNano(), r.Type, r.RequestID, r.TraceID, r.Agent, r.SessionID, r.LeafHash, r.Body); err != nil {
			return fmt.Errorf("append events: %w", err)
		}
	}
	if _, err := w.commit.ExecContext(ctx); err != nil {
		return fmt.Errorf("append events: commit: %w", err)
	}
	return nil
}

// Sync makes every batch committed before it was called durable: it fsyncs
// the write-ahead log (and, the first time a log file is seen, its
// directory, so that the file itself survives). A log that was
// checkpointed and removed needs nothing: SQLite synced the database
// before removing it.
func (w *LogWriter) Sync() error {
	w.syncMu.Lock()
	defer w.syncMu.Unlock()
	ino, err := syncFile(w.walPath)
	if err != nil || ino == 0 {
		return err
	}
	if ino != w.walInode {
		if err := syncDir(filepath.Dir(w.walPath)); err != nil {
			return err
		}
		w.walInode = ino
	}
	return nil
}

// syncWAL fdatasyncs a SQLite write-ahead log, and its directory.
func syncWAL(path string) error {
	ino, err := syncFile(path)
	if err != nil || ino == 0 {
		return err
	}
	return syncDir(filepath.Dir(path))
}

// syncFile fdatasyncs the file at path and returns its inode (zero: there
// is no such file, nothing to sync).
func syncFile(path string) (uint64, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("sync audit log: %w", err)
	}
	defer f.Close()
	// fdatasync: the WAL's data, and its size when it grew; SQLite
	// itself syncs the log this way.
	if err := syscall.Fdatasync(int(f.Fd())); err != nil {
		return 0, fmt.Errorf("sync audit log: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("sync audit log: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 1, nil
	}
	return st.Ino, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync audit log directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync audit log directory: %w", err)
	}
	return nil
}

// OpenJournal opens the audit journal in front of this writer's table,
// waiting up to wait for another owner to release it, and recovers what it
// holds (DB.RecoverJournal). It returns the log's state.
func (w *LogWriter) OpenJournal(ctx context.Context, wait time.Duration) (*Journal, LogState, int, error) {
	j, err := OpenJournal(JournalDir(w.s.path), wait)
	if err != nil {
		return nil, LogState{}, 0, err
	}
	st, n, err := w.s.RecoverJournal(ctx, j, nil)
	if err != nil {
		j.Close()
		return nil, LogState{}, 0, err
	}
	return j, st, n, nil
}

// SetReadBarrier sets the store's read barrier (DB.SetReadBarrier).
func (w *LogWriter) SetReadBarrier(fn func(context.Context) error) { w.s.SetReadBarrier(fn) }

// Durable reports whether commits need Sync to reach the disk (false when
// the store was opened with synchronous=NORMAL: then nothing is fsynced per
// commit, by the operator's choice).
func (w *LogWriter) Durable() bool { return !w.s.normal }
