package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	neturl "net/url"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
)

// OpenPostgres opens the PostgreSQL database at url (a postgres:// URL or
// a key=value connection string) and brings its schema up to date. Every
// gateway of a fleet opens the same database: the audit log's sequencer,
// revocations, approvals, grants, pins, budgets and secrets are shared.
// Commits are durable when they return (PostgreSQL's synchronous_commit,
// on by default); opts.Normal does not apply.
func OpenPostgres(ctx context.Context, url string, opts Options) (*DB, error) {
	db, err := sql.Open("pgx", url)
	if err != nil {
		return nil, fmt.Errorf("open store: postgres: %w", redactURL(err, url))
	}
	db.SetMaxOpenConns(16)
	db.SetMaxIdleConns(16)
	db.SetConnMaxIdleTime(5 * time.Minute)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open store: postgres: %w", redactURL(err, url))
	}
	s := &DB{db: db, dialect: postgres}
	if _, err := s.migrateUnless(ctx, opts.NoMigrate); err != nil {
		db.Close()
		return nil, fmt.Errorf("open store: %w", err)
	}
	return s, nil
}

// redactURL keeps the connection URL's password out of an error that
// might quote it (the error is logged and printed).
func redactURL(err error, raw string) error {
	u, perr := neturl.Parse(raw)
	if perr != nil || u.User == nil {
		return err
	}
	pw, ok := u.User.Password()
	if !ok || pw == "" || !strings.Contains(err.Error(), pw) {
		return err
	}
	return errors.New(strings.ReplaceAll(err.Error(), pw, "xxxxx"))
}
