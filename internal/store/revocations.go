package store

import (
	"context"
	"fmt"
	"time"
)

// Revocation kinds.
const (
	RevokeToken = "token" // a credential ID (jti)
	RevokeTask  = "task"  // a task and every token delegated within it
	RevokeAgent = "agent" // every credential of an agent
)

// Revoke records a revocation (idempotent).
func (s *DB) Revoke(ctx context.Context, kind, value, by, reason string) error {
	_, err := s.exec(ctx, `INSERT INTO revocations(kind, value, at_ns, by, reason) VALUES (?,?,?,?,?) ON CONFLICT DO NOTHING`,
		kind, value, time.Now().UnixNano(), by, reason)
	if err != nil {
		return fmt.Errorf("revoke: %w", err)
	}
	return nil
}

// Revocations returns every revoked value by kind.
func (s *DB) Revocations(ctx context.Context) (map[string]map[string]bool, error) {
	rows, err := s.query(ctx, `SELECT kind, value FROM revocations`)
	if err != nil {
		return nil, fmt.Errorf("read revocations: %w", err)
	}
	defer rows.Close()
	out := map[string]map[string]bool{RevokeToken: {}, RevokeTask: {}, RevokeAgent: {}}
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			return nil, fmt.Errorf("read revocations: %w", err)
		}
		if out[k] == nil {
			out[k] = map[string]bool{}
		}
		out[k][v] = true
	}
	return out, rows.Err()
}

// Unrevoke lifts a revocation (an operator's undo); it reports whether
// there was one.
func (s *DB) Unrevoke(ctx context.Context, kind, value string) (bool, error) {
	res, err := s.exec(ctx, `DELETE FROM revocations WHERE kind = ? AND value = ?`, kind, value)
	if err != nil {
		return false, fmt.Errorf("unrevoke: %w", err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}
