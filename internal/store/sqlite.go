package store

import (
	"bytes"
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// The events table is the audit log: row seq is leaf seq-1 of its Merkle
// tree, leaf_hash is the RFC 6962 leaf hash of body, and body is NULL only
// after retention pruned it. log_state holds the tree's compact range so
// that any process can append in one transaction. checkpoints holds signed
// tree heads.
const schemaSQL = `
CREATE TABLE IF NOT EXISTS events (
	seq        INTEGER PRIMARY KEY,
	time_ns    INTEGER NOT NULL,
	type       TEXT NOT NULL,
	request_id TEXT NOT NULL DEFAULT '',
	trace_id   TEXT NOT NULL DEFAULT '',
	agent      TEXT NOT NULL DEFAULT '',
	session_id TEXT NOT NULL DEFAULT '',
	leaf_hash  BLOB NOT NULL,
	body       BLOB
);
CREATE INDEX IF NOT EXISTS events_request ON events(request_id) WHERE request_id != '';
CREATE INDEX IF NOT EXISTS events_trace ON events(trace_id) WHERE trace_id != '';
CREATE INDEX IF NOT EXISTS events_agent ON events(agent, seq);
CREATE INDEX IF NOT EXISTS events_session ON events(session_id, seq) WHERE session_id != '';
CREATE INDEX IF NOT EXISTS events_type ON events(type, seq);
CREATE TABLE IF NOT EXISTS log_state (
	id    INTEGER PRIMARY KEY CHECK (id = 1),
	size  INTEGER NOT NULL,
	range BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS policy_bundles (
	version TEXT PRIMARY KEY,
	time_ns INTEGER NOT NULL,
	sources BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS policy_pointers (
	name    TEXT PRIMARY KEY,
	version TEXT NOT NULL,
	by      TEXT NOT NULL,
	time_ns INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS grants (
	id         TEXT PRIMARY KEY,
	agent      TEXT NOT NULL,
	tool       TEXT NOT NULL,
	reason     TEXT NOT NULL,
	granted_by TEXT NOT NULL,
	created_ns INTEGER NOT NULL,
	expires_ns INTEGER NOT NULL,
	revoked    INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS approvals (
	id          TEXT PRIMARY KEY,
	agent       TEXT NOT NULL,
	user_name   TEXT NOT NULL,
	task        TEXT NOT NULL,
	session_id  TEXT NOT NULL,
	request_id  TEXT NOT NULL,
	tool        TEXT NOT NULL,
	arguments   BLOB,
	args_sha256 TEXT NOT NULL,
	reasons     TEXT NOT NULL,
	findings    TEXT NOT NULL,
	created_ns  INTEGER NOT NULL,
	expires_ns  INTEGER NOT NULL,
	state       TEXT NOT NULL,
	scope       TEXT NOT NULL,
	decided_by  TEXT NOT NULL DEFAULT '',
	decided_ns  INTEGER NOT NULL DEFAULT 0,
	comment     TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS approvals_session ON approvals(agent, session_id, tool) WHERE scope = 'session';
CREATE TABLE IF NOT EXISTS tool_pins (
	upstream   TEXT NOT NULL,
	name       TEXT NOT NULL,
	digest     TEXT NOT NULL,
	definition BLOB NOT NULL,
	state      TEXT NOT NULL,
	reason     TEXT NOT NULL,
	seen_ns    INTEGER NOT NULL,
	decided_by TEXT NOT NULL DEFAULT '',
	changed_ns INTEGER NOT NULL,
	PRIMARY KEY (upstream, name, digest)
);
CREATE TABLE IF NOT EXISTS revocations (
	kind   TEXT NOT NULL,
	value  TEXT NOT NULL,
	at_ns  INTEGER NOT NULL,
	by     TEXT NOT NULL,
	reason TEXT NOT NULL,
	PRIMARY KEY (kind, value)
);
CREATE TABLE IF NOT EXISTS console_links (
	hash       TEXT PRIMARY KEY,
	admin      TEXT NOT NULL,
	expires_ns INTEGER NOT NULL,
	used       INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS join_tokens (
	hash       TEXT PRIMARY KEY,
	agent      TEXT NOT NULL,
	expires_ns INTEGER NOT NULL,
	used       INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS agent_instances (
	spiffe_id   TEXT PRIMARY KEY,
	agent       TEXT NOT NULL,
	serial      TEXT NOT NULL,
	not_after_ns INTEGER NOT NULL,
	state       TEXT NOT NULL,
	updated_ns  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS secrets (
	name       TEXT PRIMARY KEY,
	sealed     BLOB NOT NULL,
	updated_ns INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS export_cursors (
	name TEXT PRIMARY KEY,
	seq  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS memory_elements (
	id         INTEGER PRIMARY KEY,
	scope      TEXT NOT NULL,
	key        TEXT NOT NULL,
	kind       TEXT NOT NULL,
	body       BLOB,
	state      TEXT NOT NULL,
	agent      TEXT NOT NULL,
	user_name  TEXT NOT NULL,
	task       TEXT NOT NULL,
	session_id TEXT NOT NULL,
	request_id TEXT NOT NULL,
	labels     TEXT NOT NULL,
	untrusted  INTEGER NOT NULL,
	findings   TEXT NOT NULL,
	by         TEXT NOT NULL,
	created_ns INTEGER NOT NULL,
	expires_ns INTEGER NOT NULL,
	sha256     BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS memory_current ON memory_elements(scope, key, id);
CREATE TABLE IF NOT EXISTS memory_ids (
	id   INTEGER PRIMARY KEY CHECK (id = 1),
	next INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS memory_session ON memory_elements(session_id, id) WHERE session_id != '';
CREATE TABLE IF NOT EXISTS containment_releases (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	session_id TEXT NOT NULL,
	agent      TEXT NOT NULL,
	by         TEXT NOT NULL,
	at_ns      INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS learned_baselines (
	id         INTEGER PRIMARY KEY CHECK (id = 1),
	generation INTEGER NOT NULL,
	body       BLOB NOT NULL,
	saved_ns   INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS checkpoints (
	size    INTEGER PRIMARY KEY,
	time_ns INTEGER NOT NULL,
	note    BLOB NOT NULL
);
`

// Open opens (creating if needed) the SQLite database at path with full
// durability.
func Open(path string) (*DB, error) { return OpenWith(path, Options{}) }

// Options tune the store.
type Options struct {
	// Normal selects synchronous=NORMAL: writes survive a crash of the
	// process but not of the machine. The default is FULL.
	Normal bool
	// NoMigrate opens the store as it is, without applying migrations
	// (`portcullis migrate --status`).
	NoMigrate bool
}

// OpenWith opens the database at path with opts.
func OpenWith(path string, opts Options) (*DB, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	q := url.Values{}
	sync := "synchronous(FULL)"
	if opts.Normal {
		sync = "synchronous(NORMAL)"
	}
	for _, p := range []string{"journal_mode(WAL)", sync, "busy_timeout(10000)", "foreign_keys(ON)"} {
		q.Add("_pragma", p)
	}
	// Writers take the lock when they begin, so that two processes
	// appending to the log queue for it instead of failing to upgrade.
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	db.SetMaxOpenConns(4)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := &DB{db: db, dialect: sqlite, path: path, normal: opts.Normal, readOnly: opts.NoMigrate}
	if _, err := s.migrateUnless(ctx, opts.NoMigrate); err != nil {
		db.Close()
		return nil, fmt.Errorf("open store: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		db.Close()
		return nil, fmt.Errorf("open store: %w", err)
	}
	if opts.NoMigrate {
		return s, nil // a store opened to be looked at: statements prepared on use
	}
	if s.insert, err = db.PrepareContext(ctx, `INSERT INTO events(`+eventColumns+`) VALUES (?,?,?,?,?,?,?,?,?)`); err != nil {
		db.Close()
		return nil, fmt.Errorf("open store: prepare: %w", err)
	}
	return s, nil
}

// ErrCorrupt is returned by Check for a database that fails SQLite's
// integrity check: nothing it says can be trusted, and nothing should be
// added to it. Restore it from a backup (`audit verify` on a copy says
// which events survive).
var ErrCorrupt = errors.New("store failed its integrity check")

// checkFailed classifies an error of the integrity check itself.
func checkFailed(err error) error {
	if strings.Contains(err.Error(), "malformed") || strings.Contains(err.Error(), "not a database") {
		return fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return fmt.Errorf("store check could not run: %w", err)
}

// Check runs SQLite's quick integrity check (every page, b-tree and index
// entry is well formed; linear in the database's size, without the
// cross-checks of a full integrity_check). Only what the check reports,
// or a database SQLite itself calls malformed, is ErrCorrupt; a check
// that could not run (busy, I/O) is an error of its own.
func (s *DB) Check(ctx context.Context) error {
	if s.dialect == postgres {
		// PostgreSQL checks its own pages (data checksums, amcheck) under
		// its operator's care; here the database must answer.
		return s.Ping(ctx)
	}
	rows, err := s.query(ctx, `PRAGMA quick_check`)
	if err != nil {
		return checkFailed(err)
	}
	defer rows.Close()
	var problems []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			return checkFailed(err)
		}
		if line != "ok" && len(problems) < 5 {
			problems = append(problems, line)
		}
	}
	if err := rows.Err(); err != nil {
		return checkFailed(err)
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %s", ErrCorrupt, strings.Join(problems, "; "))
	}
	return nil
}

// EventRow is one stored event.
type EventRow struct {
	Seq       int64
	Time      time.Time
	Type      string
	RequestID string
	TraceID   string
	Agent     string
	SessionID string
	LeafHash  []byte
	Body      []byte // nil once pruned
}

// LogState is the audit log's size and its Merkle tree's compact range
// (opaque to the store).
type LogState struct {
	Size  int64
	Range []byte
}

// ErrEmptyBatch is returned by AppendLog when build returns no rows.
var ErrEmptyBatch = errors.New("append events: empty batch")

// AppendLog appends to the audit log in one write transaction: build gets
// the current state and returns the rows to append (numbered from
// state.Size+1) and the new state. Either everything is durable when it
// returns nil, or nothing is written. Several processes may append; the
// transaction serialises them.
func (s *DB) AppendLog(ctx context.Context, build func(LogState) ([]EventRow, LogState, error)) error {
	if s.dialect == sqlite {
		if done, err := s.appendJournaled(ctx, build); done {
			return err
		}
	}
	return s.appendLog(ctx, build, false)
}

// appendJournaled appends through the audit journal when the database has
// one (a gateway ran on it): to the journal when a gateway owns it, else
// to the table after putting in it what the journal holds. done is false
// when there is no journal.
func (s *DB) appendJournaled(ctx context.Context, build func(LogState) ([]EventRow, LogState, error)) (done bool, err error) {
	dir := JournalDir(s.path)
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	j, err := OpenJournal(dir, 0)
	if errors.Is(err, ErrJournalLocked) {
		return true, AppendForeign(dir, build, func() (LogState, error) { return s.tableState(ctx) })
	}
	if err != nil {
		return true, err
	}
	defer j.Close()
	// The table append runs under the journal's append lock: another
	// writer that finds the journal owned (by this process, for now)
	// appends a frame after it, never one with the same number.
	_, _, err = s.RecoverJournal(ctx, j, func() error { return s.appendLog(ctx, build, false) })
	return true, err
}

// recoverUnowned recovers the audit journal if it holds frames and no
// process owns it (DB.caughtUp).
func (s *DB) recoverUnowned(ctx context.Context) error {
	dir := JournalDir(s.path)
	segs, err := listSegments(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !slices.ContainsFunc(segs, func(sg segment) bool { return hasFrames(sg.path) }) {
		return nil
	}
	j, err := OpenJournal(dir, 0)
	if errors.Is(err, ErrJournalLocked) {
		return s.waitForTable(ctx, dir)
	}
	if err != nil {
		return err
	}
	defer j.Close()
	_, _, err = s.RecoverJournal(ctx, j, nil)
	return err
}

// journalCheck vets a frame against the log's state before it (the audit
// package registers its Merkle check: every leaf is its body's hash and
// they give the state the frame records).
var journalCheck atomic.Pointer[func(LogState, JournalFrame) error]

// CheckJournalWith sets the check every recovery of a journal applies to
// each frame the table lacks.
func CheckJournalWith(fn func(LogState, JournalFrame) error) { journalCheck.Store(&fn) }

// TableWait bounds how long a read waits for the journal's owner (another
// process, or a recorder that is not this handle's) to put what its
// journal holds in the table.
const TableWait = 5 * time.Second

// waitForTable waits until the table holds every event the journal in
// dir, which another writer owns, held when it was called.
func (s *DB) waitForTable(ctx context.Context, dir string) error {
	end, err := JournalEnd(dir)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(TableWait)
	for {
		st, err := s.tableState(ctx)
		if err != nil {
			return err
		}
		if st.Size >= end {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("audit log: the table holds %d events, its journal %d: its owner is not filling it", st.Size, end)
		}
		select {
		case <-time.After(2 * time.Millisecond):
		case <-ctx.Done():
			return fmt.Errorf("audit log: waiting for the table: %w", ctx.Err())
		}
	}
}

// RecoverJournal puts in the table every row of j it lacks (frames a
// writer committed and did not index before it stopped), each frame in
// one transaction after the registered check (CheckJournalWith), checks
// that the frames it has are the table's rows, makes the table durable,
// empties j, then calls then (if set) with other writers still held off.
// It returns the log's state and how many rows it added.
func (s *DB) RecoverJournal(ctx context.Context, j *Journal, then func() error) (LogState, int, error) {
	var check func(LogState, JournalFrame) error
	if p := journalCheck.Load(); p != nil {
		check = *p
	}
	// Only the journal's owner, which the caller is, writes the table.
	table, err := s.tableState(ctx)
	if err != nil {
		return LogState{}, 0, err
	}
	tip := table // the log's state after the last frame taken
	var pending []EventRow
	added := 0
	// flush puts the frames taken so far in the table, in one transaction.
	flush := func() error {
		if len(pending) == 0 {
			return nil
		}
		rows, from := pending, table
		err := s.appendLog(ctx, func(cur LogState) ([]EventRow, LogState, error) {
			if cur.Size != from.Size {
				return nil, LogState{}, ErrLogMoved
			}
			return rows, tip, nil
		}, false)
		if err != nil {
			return fmt.Errorf("audit journal: recover events %d-%d: %w", rows[0].Seq, tip.Size, err)
		}
		table, pending = tip, nil
		return nil
	}
	held := false // the journal held frames, which go once recovered
	err = j.Recover(func(frames func(func(JournalFrame) error) error) error {
		err := frames(func(fr JournalFrame) error {
			held = true
			first := fr.Rows[0].Seq
			switch {
			case fr.Next.Size <= tip.Size:
				// In the table already (or the journal repeats itself):
				// it must be the table's rows.
				if err := flush(); err != nil {
					return err
				}
				return s.sameRows(ctx, fr)
			case first != tip.Size+1:
				return fmt.Errorf("audit journal: a frame of events %d-%d does not continue the log of %d events", first, fr.Next.Size, tip.Size)
			}
			if check != nil {
				if err := check(tip, fr); err != nil {
					return err
				}
			}
			pending = append(pending, fr.Rows...)
			tip = fr.Next
			added += len(fr.Rows)
			if len(pending) >= recoverBatch {
				return flush()
			}
			return nil
		})
		if err == nil {
			err = flush()
		}
		if err == nil && held {
			// The frames are about to be removed: their rows must be on
			// disk, which a commit alone is not with synchronous=NORMAL:
			// this recovery's own (store.synchronous normal), or the
			// indexer's, which put a stopped writer's frames in the table
			// without an fsync of its own.
			err = recoverSync(s.path + "-wal")
		}
		return err
	}, then)
	if err != nil {
		return LogState{}, 0, err
	}
	return tip, added, nil
}

// recoverSync makes the table durable before a recovered journal is
// emptied (a variable: the tests count its calls).
var recoverSync = syncWAL

// recoverBatch bounds the rows of one recovery transaction.
const recoverBatch = 4096

// sameRows checks that the table's rows for fr's events are fr's.
func (s *DB) sameRows(ctx context.Context, fr JournalFrame) error {
	rows, err := s.query(ctx, `SELECT seq, leaf_hash FROM events WHERE seq >= ? AND seq <= ? ORDER BY seq`, fr.Rows[0].Seq, fr.Next.Size)
	if err != nil {
		return fmt.Errorf("audit journal: %w", err)
	}
	defer rows.Close()
	i := 0
	for rows.Next() {
		var seq int64
		var leaf []byte
		if err := rows.Scan(&seq, &leaf); err != nil {
			return fmt.Errorf("audit journal: %w", err)
		}
		if i >= len(fr.Rows) || seq != fr.Rows[i].Seq || !bytes.Equal(leaf, fr.Rows[i].LeafHash) {
			return fmt.Errorf("audit journal: event %d in the journal is not the log's event %d", fr.Rows[min(i, len(fr.Rows)-1)].Seq, seq)
		}
		i++
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("audit journal: %w", err)
	}
	if i != len(fr.Rows) {
		return fmt.Errorf("audit journal: events %d-%d are in the journal, %d of them in the log", fr.Rows[0].Seq, fr.Next.Size, i)
	}
	return nil
}

func (s *DB) appendLog(ctx context.Context, build func(LogState) ([]EventRow, LogState, error), async bool) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("append events: %w", err)
	}
	defer tx.Rollback()
	if async {
		if _, err := tx.ExecContext(ctx, `SET LOCAL synchronous_commit TO OFF`); err != nil {
			return fmt.Errorf("append events: %w", err)
		}
	}
	// PostgreSQL: the row lock on the log state is the fleet's single
	// sequencer (its migration creates the row). SQLite: the transaction
	// began with the database's write lock.
	lock := ""
	if s.dialect == postgres {
		lock = " FOR UPDATE"
	}
	var st LogState
	err = s.queryRowOn(ctx, tx, `SELECT size, range FROM log_state WHERE id = 1`+lock).Scan(&st.Size, &st.Range)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("append events: read log state: %w", err)
	}
	rows, next, err := build(st)
	if err != nil {
		return fmt.Errorf("append events: %w", err)
	}
	if len(rows) == 0 {
		return ErrEmptyBatch
	}
	if rows[0].Seq != st.Size+1 || next.Size != st.Size+int64(len(rows)) {
		return fmt.Errorf("append events: rows numbered from %d for a log of %d", rows[0].Seq, st.Size)
	}
	if err := s.insertEvents(ctx, tx, rows); err != nil {
		return err
	}
	if _, err := s.execOn(ctx, tx, `INSERT INTO log_state(id, size, range) VALUES (1, ?, ?)
		ON CONFLICT(id) DO UPDATE SET size = excluded.size, range = excluded.range`, next.Size, next.Range); err != nil {
		return fmt.Errorf("append events: write log state: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("append events: commit: %w", err)
	}
	return nil
}

// State returns the log's current state.
func (s *DB) State(ctx context.Context) (LogState, error) {
	if err := s.caughtUp(ctx); err != nil {
		return LogState{}, err
	}
	return s.tableState(ctx)
}

// tableState is the log's state as the table has it.
func (s *DB) tableState(ctx context.Context) (LogState, error) {
	var st LogState
	err := s.queryRow(ctx, `SELECT size, range FROM log_state WHERE id = 1`).Scan(&st.Size, &st.Range)
	if errors.Is(err, sql.ErrNoRows) {
		return LogState{}, nil
	}
	if err != nil {
		return LogState{}, fmt.Errorf("read log state: %w", err)
	}
	return st, nil
}

// EventQuery selects events. Zero fields do not filter.
type EventQuery struct {
	AfterSeq  int64
	RequestID string
	TraceID   string
	Agent     string
	SessionID string
	// Types selects events of these types (none: all).
	Types []string
	// BodyContains selects events whose (hashed) body contains this
	// text: a search with no index column behind it (a task ID, for
	// instance), linear in the log. Callers decode and check what they get.
	BodyContains string
	Limit        int
	// Last returns the Limit newest matching events (still in ascending order).
	Last bool
}

// MaxQueryLimit bounds one query's result.
const MaxQueryLimit = 10000

// Events returns events matching q in ascending sequence order.
func (s *DB) Events(ctx context.Context, q EventQuery) ([]EventRow, error) {
	if err := s.caughtUp(ctx); err != nil {
		return nil, err
	}
	if q.Limit <= 0 || q.Limit > MaxQueryLimit {
		q.Limit = MaxQueryLimit
	}
	if len(q.Types) > 1 {
		// One query a type, each a range of the type index, merged: SQLite
		// would otherwise scan the log by sequence for a rare type.
		var all []EventRow
		for _, t := range q.Types {
			one := q
			one.Types = []string{t}
			rows, err := s.Events(ctx, one)
			if err != nil {
				return nil, err
			}
			all = append(all, rows...)
		}
		slices.SortFunc(all, func(a, b EventRow) int { return cmp.Compare(a.Seq, b.Seq) })
		if len(all) > q.Limit {
			if q.Last {
				all = all[len(all)-q.Limit:]
			} else {
				all = all[:q.Limit]
			}
		}
		return all, nil
	}
	// The "!= ''" terms let SQLite use the partial indexes (it cannot
	// prove a bound parameter non-empty): without them a lookup by request,
	// trace or session scans the whole log.
	where, args := "seq > ?", []any{q.AfterSeq}
	if q.RequestID != "" {
		where += " AND request_id = ? AND request_id != ''"
		args = append(args, q.RequestID)
	}
	if q.TraceID != "" {
		where += " AND trace_id = ? AND trace_id != ''"
		args = append(args, q.TraceID)
	}
	if q.Agent != "" {
		where += " AND agent = ?"
		args = append(args, q.Agent)
	}
	if q.SessionID != "" {
		where += " AND session_id = ? AND session_id != ''"
		args = append(args, q.SessionID)
	}
	if len(q.Types) > 0 {
		where += " AND type IN (?" + strings.Repeat(",?", len(q.Types)-1) + ")"
		for _, t := range q.Types {
			args = append(args, t)
		}
	}
	if q.BodyContains != "" {
		where += " AND " + s.containsBytes("body")
		args = append(args, []byte(q.BodyContains))
	}
	order := "ASC"
	if q.Last {
		order = "DESC"
	}
	args = append(args, q.Limit)
	rows, err := s.query(ctx, `SELECT `+eventColumns+` FROM events WHERE `+where+` ORDER BY seq `+order+` LIMIT ?`, args...)
	if err != nil {
		return nil, fmt.Errorf("query events: %w", err)
	}
	defer rows.Close()
	var out []EventRow
	for rows.Next() {
		var r EventRow
		var ns int64
		if err := rows.Scan(&r.Seq, &ns, &r.Type, &r.RequestID, &r.TraceID, &r.Agent, &r.SessionID, &r.LeafHash, &r.Body); err != nil {
			return nil, fmt.Errorf("query events: %w", err)
		}
		r.Time = time.Unix(0, ns).UTC()
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("query events: %w", err)
	}
	if q.Last {
		for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
			out[i], out[j] = out[j], out[i]
		}
	}
	return out, nil
}

const eventColumns = `seq, time_ns, type, request_id, trace_id, agent, session_id, leaf_hash, body`

// insertEvents inserts rows inside tx: through the prepared statement on
// SQLite, in one multi-row statement on PostgreSQL (one round trip a batch).
func (s *DB) insertEvents(ctx context.Context, tx *sql.Tx, rows []EventRow) error {
	if s.dialect == sqlite && s.insert != nil {
		stmt := tx.StmtContext(ctx, s.insert)
		defer stmt.Close()
		for i := range rows {
			r := &rows[i]
			if _, err := stmt.ExecContext(ctx, r.Seq, r.Time.UnixNano(), r.Type, r.RequestID, r.TraceID, r.Agent, r.SessionID, r.LeafHash, r.Body); err != nil {
				return fmt.Errorf("append events: %w", err)
			}
		}
		return nil
	}
	var q strings.Builder
	q.WriteString(`INSERT INTO events(` + eventColumns + `) VALUES `)
	args := make([]any, 0, 9*len(rows))
	for i := range rows {
		r := &rows[i]
		if i > 0 {
			q.WriteByte(',')
		}
		q.WriteString("(?,?,?,?,?,?,?,?,?)")
		args = append(args, r.Seq, r.Time.UnixNano(), r.Type, r.RequestID, r.TraceID, r.Agent, r.SessionID, r.LeafHash, r.Body)
	}
	if _, err := s.execOn(ctx, tx, q.String(), args...); err != nil {
		return fmt.Errorf("append events: %w", err)
	}
	return nil
}
