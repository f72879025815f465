package store

import (
	"context"
	"fmt"
	"time"
)

// Release is an operator's lifting of a containment (of a session, or of
// every session of an agent) recorded for the running gateway, which holds
// containment in memory and polls for these.
type Release struct {
	ID             int64
	Session, Agent string
	By             string
	At             time.Time
}

// AddRelease records a release and lifts the containment it releases.
func (s *DB) AddRelease(ctx context.Context, session, agent, by string) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("record release: %w", err)
	}
	defer tx.Rollback()
	if _, err := s.execOn(ctx, tx, `INSERT INTO containment_releases(session_id, agent, by, at_ns) VALUES (?,?,?,?)`, session, agent, by, time.Now().UnixNano()); err != nil {
		return fmt.Errorf("record release: %w", err)
	}
	if err := s.uncontain(ctx, tx, session, agent); err != nil {
		return fmt.Errorf("record release: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("record release: %w", err)
	}
	return nil
}

// Releases returns the releases after id, oldest first (at most 1000).
func (s *DB) Releases(ctx context.Context, after int64) ([]Release, error) {
	rows, err := s.query(ctx, `SELECT id, session_id, agent, by, at_ns FROM containment_releases WHERE id > ? ORDER BY id LIMIT 1000`, after)
	if err != nil {
		return nil, fmt.Errorf("read releases: %w", err)
	}
	defer rows.Close()
	var out []Release
	for rows.Next() {
		var r Release
		var ns int64
		if err := rows.Scan(&r.ID, &r.Session, &r.Agent, &r.By, &ns); err != nil {
			return nil, err
		}
		r.At = time.Unix(0, ns)
		out = append(out, r)
	}
	return out, rows.Err()
}

// LastRelease is the newest release's ID (0: none).
func (s *DB) LastRelease(ctx context.Context) (int64, error) {
	var id int64
	err := s.queryRow(ctx, `SELECT COALESCE(MAX(id), 0) FROM containment_releases`).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("read releases: %w", err)
	}
	return id, nil
}
