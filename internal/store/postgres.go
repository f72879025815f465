package store

import (
	"context"
	"errors"
	"fmt"
	neturl "net/url"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// OpenPostgres opens the PostgreSQL database at url (a postgres:// URL or
// a key=value connection string) and brings its schema up to date. Every
// gateway of a fleet opens the same database: the audit log's sequencer,
// revocations, approvals, grants, pins, budgets and secrets are shared.
// Commits are durable when they return: a database that commits
// asynchronously (synchronous_commit off for this role) is refused, and
// SyncLog checks it again on every flush; stronger settings (remote_write,
// remote_apply) are kept. opts.Normal does not apply.
func OpenPostgres(ctx context.Context, url string, opts Options) (*DB, error) {
	cc, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("open store: postgres: %w", redactURL(err, url))
	}
	// Nothing may wait forever on the database: a statement, a lock (the
	// log's sequencer is a row lock) or a session that died inside a
	// transaction (its locks are released after the idle timeout).
	// Callers deny what they cannot record in time.
	for k, v := range map[string]string{"statement_timeout": "30s", "lock_timeout": "10s", "idle_in_transaction_session_timeout": "30s"} {
		if _, set := cc.RuntimeParams[k]; !set {
			cc.RuntimeParams[k] = v
		}
	}
	db := stdlib.OpenDB(*cc)
	db.SetMaxOpenConns(16)
	db.SetMaxIdleConns(16)
	db.SetConnMaxIdleTime(5 * time.Minute)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open store: postgres: %w", redactURL(err, url))
	}
	s := &DB{db: db, dialect: postgres, pgcfg: cc}
	if err := s.checkSynchronous(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open store: %w", err)
	}
	if _, err := s.migrateUnless(ctx, opts.NoMigrate); err != nil {
		db.Close()
		return nil, fmt.Errorf("open store: %w", err)
	}
	return s, nil
}

// ErrAsyncCommit is returned when the database commits without waiting for
// its disk: an acknowledged event could be lost with the database.
var ErrAsyncCommit = errors.New("the database commits asynchronously (synchronous_commit = off): set it on (or stronger) for Portcullis' role; a proxy that drops startup parameters must not turn it off")

func (s *DB) checkSynchronous(ctx context.Context) error {
	var mode string
	if err := s.db.QueryRowContext(ctx, `SELECT current_setting('synchronous_commit')`).Scan(&mode); err != nil {
		return fmt.Errorf("read synchronous_commit: %w", err)
	}
	if mode == "off" {
		return ErrAsyncCommit
	}
	return nil
}

// redactURL keeps the connection URL's password out of an error that
// might quote it (the error is logged and printed): a password found in
// the message is masked; one too short to mask safely withholds the
// message.
func redactURL(err error, raw string) error {
	var pws []string
	if u, perr := neturl.Parse(raw); perr == nil {
		if u.User != nil {
			if pw, ok := u.User.Password(); ok {
				pws = append(pws, pw, neturl.QueryEscape(pw), neturl.PathEscape(pw))
			}
		}
		if pw := u.Query().Get("password"); pw != "" {
			pws = append(pws, pw, neturl.QueryEscape(pw))
		}
	}
	msg := err.Error()
	for _, pw := range pws {
		if pw == "" || !strings.Contains(msg, pw) {
			continue
		}
		if len(pw) < 6 {
			return errors.New("cannot connect to the database (details withheld: they would show its password)")
		}
		msg = strings.ReplaceAll(msg, pw, "[redacted]")
	}
	if msg == err.Error() {
		return err
	}
	return errors.New(msg)
}

// AsyncLog reports whether AppendLogAsync and SyncLog are available: on
// PostgreSQL, where they let the audit recorder commit a batch before the
// relay without waiting for the disk, as SQLite's LogWriter does.
func (s *DB) AsyncLog() bool { return s.dialect == postgres }

// AppendLogAsync is AppendLog with an asynchronous commit: when it
// returns the batch is committed (visible to every gateway, kept if this
// process dies) but may not be on the database's disk yet; SyncLog makes
// it so. PostgreSQL only.
func (s *DB) AppendLogAsync(ctx context.Context, build func(LogState) ([]EventRow, LogState, error)) error {
	if !s.AsyncLog() {
		return ErrNoLogWriter
	}
	return s.appendLog(ctx, build, true)
}

// SyncLog makes every commit before it durable: one statement that
// commits a transaction with an ID and nothing else (txid_current, in its
// own synchronous commit). PostgreSQL flushes its write-ahead log up to
// that commit, which covers every earlier asynchronous commit, from any
// gateway, and lets concurrent flushes share one fsync. Nothing is
// written to any table. The same statement reads the commit's
// synchronous_commit: if it is off (a pooler that reset the session, a
// changed role), nothing was flushed and SyncLog fails.
func (s *DB) SyncLog(ctx context.Context) error {
	if !s.AsyncLog() {
		return ErrNoLogWriter
	}
	var xid int64
	var mode string
	if err := s.db.QueryRowContext(ctx, `SELECT txid_current(), current_setting('synchronous_commit')`).Scan(&xid, &mode); err != nil {
		return fmt.Errorf("sync audit log: %w", err)
	}
	if mode == "off" {
		return fmt.Errorf("sync audit log: %w", ErrAsyncCommit)
	}
	return nil
}

// Changes calls fn with the table's name whenever a shared table changes
// (SharedTables), from any writer, until ctx ends: the change feed of a
// fleet, on one connection of its own that LISTENs on ChangeChannel and
// reconnects after a failure (after which fn is called for every table:
// what changed meanwhile was not heard). fn runs on the listening
// goroutine and should be quick. SQLite has no feed (one process writes
// and reads it): Changes returns at once.
func (s *DB) Changes(ctx context.Context, log func(msg string, err error), fn func(table string)) {
	if s.dialect != postgres {
		return
	}
	backoff := 100 * time.Millisecond
	for first := true; ctx.Err() == nil; first = false {
		err := s.listen(ctx, func() {
			backoff = 100 * time.Millisecond
			if !first {
				for _, t := range SharedTables {
					fn(t)
				}
			}
		}, fn)
		if ctx.Err() != nil {
			return
		}
		log("change feed lost; polling alone until it is back", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func (s *DB) listen(ctx context.Context, listening func(), fn func(string)) error {
	conn, err := pgx.ConnectConfig(ctx, s.pgcfg)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+ChangeChannel); err != nil {
		return err
	}
	listening()
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		fn(n.Payload)
	}
}

// Lease makes the caller the fleet's one holder of name (an exporter, a
// sweeper) for as long as it keeps the lease: a PostgreSQL session-level
// advisory lock on a connection of its own, checked every few seconds.
// ok is false when another gateway holds it. lost is closed when the
// lease is gone (the connection failed: the database released the lock);
// release gives it up. On SQLite (one gateway) the lease is always
// granted and never lost.
func (s *DB) Lease(ctx context.Context, name string) (lost <-chan struct{}, release func(), ok bool, err error) {
	gone := make(chan struct{})
	if s.dialect != postgres {
		return gone, func() {}, true, nil
	}
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return nil, nil, false, fmt.Errorf("lease %s: %w", name, err)
	}
	if err := conn.QueryRowContext(ctx, `SELECT pg_try_advisory_lock(hashtext($1))`, "portcullis:"+name).Scan(&ok); err != nil || !ok {
		conn.Close()
		if err != nil {
			return nil, nil, false, fmt.Errorf("lease %s: %w", name, err)
		}
		return nil, nil, false, nil
	}
	stop := make(chan struct{})
	var once sync.Once
	go func() {
		defer close(gone)
		t := time.NewTicker(2 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				pctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				err := conn.PingContext(pctx)
				cancel()
				if err != nil {
					conn.Close()
					return
				}
			}
		}
	}()
	release = func() {
		once.Do(func() {
			close(stop)
			<-gone
			uctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			conn.ExecContext(uctx, `SELECT pg_advisory_unlock(hashtext($1))`, "portcullis:"+name)
			conn.Close()
		})
	}
	return gone, release, true, nil
}
