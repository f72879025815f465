package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// SQLite is the embedded store.
type SQLite struct {
	db     *sql.DB
	path   string
	insert *sql.Stmt // prepared once: parsing SQL per batch showed in profiles
}

const schemaSQL = `
CREATE TABLE IF NOT EXISTS events (
	seq        INTEGER PRIMARY KEY,
	time_ns    INTEGER NOT NULL,
	type       TEXT NOT NULL,
	request_id TEXT NOT NULL DEFAULT '',
	agent      TEXT NOT NULL DEFAULT '',
	session_id TEXT NOT NULL DEFAULT '',
	body       BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS events_request ON events(request_id) WHERE request_id != '';
CREATE INDEX IF NOT EXISTS events_agent ON events(agent, seq);
`

// Open opens (creating if needed) the SQLite database at path with full
// durability.
func Open(path string) (*SQLite, error) { return OpenWith(path, Options{}) }

// Options tune the store.
type Options struct {
	// Normal selects synchronous=NORMAL: writes survive a crash of the
	// process but not of the machine. The default is FULL.
	Normal bool
}

// OpenWith opens the database at path with opts.
func OpenWith(path string, opts Options) (*SQLite, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	q := url.Values{}
	sync := "synchronous(FULL)"
	if opts.Normal {
		sync = "synchronous(NORMAL)"
	}
	for _, p := range []string{"journal_mode(WAL)", sync, "busy_timeout(5000)", "foreign_keys(ON)"} {
		q.Add("_pragma", p)
	}
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	db.SetMaxOpenConns(4)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := db.ExecContext(ctx, schemaSQL); err != nil {
		db.Close()
		return nil, fmt.Errorf("open store: migrate: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		db.Close()
		return nil, fmt.Errorf("open store: %w", err)
	}
	insert, err := db.PrepareContext(ctx, `INSERT INTO events(time_ns, type, request_id, agent, session_id, body) VALUES (?,?,?,?,?,?)`)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open store: prepare: %w", err)
	}
	return &SQLite{db: db, path: path, insert: insert}, nil
}

// Close closes the database.
func (s *SQLite) Close() error {
	s.insert.Close()
	return s.db.Close()
}

// Ping checks the database answers; /readyz uses it.
func (s *SQLite) Ping(ctx context.Context) error { return s.db.PingContext(ctx) }

// EventRow is one stored event.
type EventRow struct {
	Seq       int64
	Time      time.Time
	Type      string
	RequestID string
	Agent     string
	SessionID string
	Body      []byte
}

// ErrEmptyBatch is returned by AppendEvents for an empty batch.
var ErrEmptyBatch = errors.New("append events: empty batch")

// AppendEvents writes rows in one transaction and sets their Seq. Either all
// rows are durable when it returns nil, or none are.
func (s *SQLite) AppendEvents(ctx context.Context, rows []EventRow) error {
	if len(rows) == 0 {
		return ErrEmptyBatch
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("append events: %w", err)
	}
	defer tx.Rollback()
	stmt := tx.StmtContext(ctx, s.insert)
	defer stmt.Close()
	for i := range rows {
		r := &rows[i]
		res, err := stmt.ExecContext(ctx, r.Time.UnixNano(), r.Type, r.RequestID, r.Agent, r.SessionID, r.Body)
		if err != nil {
			return fmt.Errorf("append events: %w", err)
		}
		if r.Seq, err = res.LastInsertId(); err != nil {
			return fmt.Errorf("append events: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("append events: commit: %w", err)
	}
	return nil
}

// EventQuery selects events. Zero fields do not filter.
type EventQuery struct {
	AfterSeq  int64
	RequestID string
	Agent     string
	Limit     int
	// Last returns the Limit newest matching events (still in ascending order).
	Last bool
}

// MaxQueryLimit bounds one query's result.
const MaxQueryLimit = 10000

// Events returns events matching q in ascending sequence order.
func (s *SQLite) Events(ctx context.Context, q EventQuery) ([]EventRow, error) {
	if q.Limit <= 0 || q.Limit > MaxQueryLimit {
		q.Limit = MaxQueryLimit
	}
	where, args := "seq > ?", []any{q.AfterSeq}
	if q.RequestID != "" {
		where += " AND request_id = ?"
		args = append(args, q.RequestID)
	}
	if q.Agent != "" {
		where += " AND agent = ?"
		args = append(args, q.Agent)
	}
	order := "ASC"
	if q.Last {
		order = "DESC"
	}
	args = append(args, q.Limit)
	rows, err := s.db.QueryContext(ctx, `SELECT seq, time_ns, type, request_id, agent, session_id, body FROM events WHERE `+where+` ORDER BY seq `+order+` LIMIT ?`, args...)
	if err != nil {
		return nil, fmt.Errorf("query events: %w", err)
	}
	defer rows.Close()
	var out []EventRow
	for rows.Next() {
		var r EventRow
		var ns int64
		if err := rows.Scan(&r.Seq, &ns, &r.Type, &r.RequestID, &r.Agent, &r.SessionID, &r.Body); err != nil {
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
