package store

import (
	"context"
	"database/sql"
	"errors"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
)

// dialect is the SQL database behind a DB. The store's statements are
// written once, in the SQL both databases accept (`?` placeholders,
// `ON CONFLICT`, `RETURNING`); the few differences are branches on the
// dialect, next to the statement they concern.
type dialect int

const (
	sqlite dialect = iota
	postgres
)

func (d dialect) String() string {
	if d == postgres {
		return "postgres"
	}
	return "sqlite"
}

// DB is the store: the embedded SQLite database in the data directory
// (Open) or a PostgreSQL database shared by several gateways
// (OpenPostgres). Safe for concurrent use.
type DB struct {
	db      *sql.DB
	dialect dialect
	// SQLite only.
	path   string
	insert *sql.Stmt // prepared once: parsing SQL per batch showed in profiles
	normal bool      // synchronous=NORMAL: commits are not fsynced
	// readOnly: opened to be looked at (NoMigrate): the audit journal is
	// not recovered into the table.
	readOnly bool
	// PostgreSQL only: the connection settings, for the change feed's own
	// connection.
	pgcfg *pgx.ConnConfig
	// barrier, if set, is called before every read of the audit log: the
	// recorder's, which waits until the events table holds every event
	// committed to the journal before the read began.
	barrier atomic.Pointer[func(context.Context) error]
}

// SetReadBarrier sets (nil: clears) the function every read of the audit
// log calls first; see DB.barrier.
func (s *DB) SetReadBarrier(fn func(context.Context) error) {
	if fn == nil {
		s.barrier.Store(nil)
		return
	}
	s.barrier.Store(&fn)
}

// caughtUp is called before reading the events table or the log's state.
// Without a barrier (no recorder in this process owns the log), a journal
// that no process owns (its gateway stopped before putting every event in
// the table, or crashed) is recovered first, so that a reader after a
// crash sees every event the gateway acknowledged; a journal a gateway
// owns is left to it (the table follows it within IndexDelay and
// CatchUpInterval).
func (s *DB) caughtUp(ctx context.Context) error {
	if fn := s.barrier.Load(); fn != nil {
		return (*fn)(ctx)
	}
	if s.dialect != sqlite || s.readOnly {
		return nil
	}
	return s.recoverUnowned(ctx)
}

// Backend names the database behind the store: "sqlite" or "postgres".
func (s *DB) Backend() string { return s.dialect.String() }

// Close closes the database.
func (s *DB) Close() error {
	if s.insert != nil {
		s.insert.Close()
	}
	return s.db.Close()
}

// Ping checks the database answers; /readyz uses it.
func (s *DB) Ping(ctx context.Context) error { return s.db.PingContext(ctx) }

// execer is what a statement runs on: the pool or a transaction.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func (s *DB) exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	return s.execOn(ctx, s.db, q, args...)
}

func (s *DB) query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	return s.queryOn(ctx, s.db, q, args...)
}

func (s *DB) queryRow(ctx context.Context, q string, args ...any) *sql.Row {
	return s.queryRowOn(ctx, s.db, q, args...)
}

func (s *DB) execOn(ctx context.Context, e execer, q string, args ...any) (sql.Result, error) {
	q, args = s.bind(q, args)
	return e.ExecContext(ctx, q, args...)
}

func (s *DB) queryOn(ctx context.Context, e execer, q string, args ...any) (*sql.Rows, error) {
	q, args = s.bind(q, args)
	return e.QueryContext(ctx, q, args...)
}

func (s *DB) queryRowOn(ctx context.Context, e execer, q string, args ...any) *sql.Row {
	q, args = s.bind(q, args)
	return e.QueryRowContext(ctx, q, args...)
}

// bind adapts a statement and its arguments to the dialect: PostgreSQL
// numbers its placeholders ($1, $2, ...) and stores flags as integers
// here, as SQLite does.
func (s *DB) bind(q string, args []any) (string, []any) {
	if s.dialect != postgres {
		return q, args
	}
	for i, a := range args {
		if b, ok := a.(bool); ok {
			if b {
				args[i] = int64(1)
			} else {
				args[i] = int64(0)
			}
		}
	}
	return numberPlaceholders(q), args
}

// numberPlaceholders rewrites each `?` outside quoted text as $1, $2, ...
func numberPlaceholders(q string) string {
	if !strings.Contains(q, "?") {
		return q
	}
	var b strings.Builder
	b.Grow(len(q) + 16)
	n := 0
	var quote byte
	for i := 0; i < len(q); i++ {
		c := q[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"':
			quote = c
		case c == '?':
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// ErrNoLogWriter is returned by LogWriter for a database whose commits are
// durable when they return (PostgreSQL): the audit recorder then appends
// through AppendLog, whose transactions it groups.
var ErrNoLogWriter = errors.New("store: no single-writer log path for this database")

// containsBytes is the condition "column contains the bound bytes".
func (s *DB) containsBytes(column string) string {
	if s.dialect == postgres {
		return "position(? in " + column + ") > 0"
	}
	return "instr(" + column + ", ?) > 0"
}
