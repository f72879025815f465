package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/portcullis-dev/portcullis/internal/grant"
)

var _ grant.Store = (*DB)(nil)

// ErrNotFound is returned for a missing record.
var ErrNotFound = errors.New("not found")

// AddGrant stores a new grant.
func (s *DB) AddGrant(ctx context.Context, g grant.Grant) error {
	_, err := s.exec(ctx, `INSERT INTO grants(id, agent, tool, reason, granted_by, created_ns, expires_ns) VALUES (?,?,?,?,?,?,?)`,
		g.ID, g.Agent, g.Tool, g.Reason, g.GrantedBy, g.Created.UnixNano(), g.Expires.UnixNano())
	if err != nil {
		return fmt.Errorf("add grant: %w", err)
	}
	return nil
}

// RevokeGrant marks a grant revoked and returns it.
func (s *DB) RevokeGrant(ctx context.Context, id string) (grant.Grant, error) {
	res, err := s.exec(ctx, `UPDATE grants SET revoked = 1 WHERE id = ? AND revoked = 0`, id)
	if err != nil {
		return grant.Grant{}, fmt.Errorf("revoke grant: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return grant.Grant{}, fmt.Errorf("revoke grant %s: %w (or already revoked)", id, ErrNotFound)
	}
	row := s.queryRow(ctx, `SELECT id, agent, tool, reason, granted_by, created_ns, expires_ns, revoked FROM grants WHERE id = ?`, id)
	return scanGrant(row)
}

// Grants returns the grants not revoked that expire after activeAt (all
// grants when activeAt is zero).
func (s *DB) Grants(ctx context.Context, activeAt time.Time) ([]grant.Grant, error) {
	q := `SELECT id, agent, tool, reason, granted_by, created_ns, expires_ns, revoked FROM grants`
	var args []any
	if !activeAt.IsZero() {
		q += ` WHERE revoked = 0 AND expires_ns > ?`
		args = append(args, activeAt.UnixNano())
	}
	rows, err := s.query(ctx, q+` ORDER BY created_ns`, args...)
	if err != nil {
		return nil, fmt.Errorf("read grants: %w", err)
	}
	defer rows.Close()
	var out []grant.Grant
	for rows.Next() {
		g, err := scanGrant(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, g)
	}
	return out, rows.Err()
}

type scanner interface{ Scan(...any) error }

func scanGrant(r scanner) (grant.Grant, error) {
	var g grant.Grant
	var c, e int64
	var revoked int
	if err := r.Scan(&g.ID, &g.Agent, &g.Tool, &g.Reason, &g.GrantedBy, &c, &e, &revoked); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return g, ErrNotFound
		}
		return g, fmt.Errorf("read grant: %w", err)
	}
	g.Created, g.Expires, g.Revoked = time.Unix(0, c).UTC(), time.Unix(0, e).UTC(), revoked != 0
	return g, nil
}
