package store

import (
	"context"
	"fmt"
	"time"

	"github.com/portcullis-dev/portcullis/internal/toolreg"
)

var _ toolreg.Store = (*DB)(nil)

// Pins returns every pin of an upstream ("" for all upstreams), oldest first.
func (s *DB) Pins(ctx context.Context, upstream string) ([]toolreg.Pin, error) {
	q, args := `SELECT upstream, name, digest, definition, state, reason, seen_ns, decided_by FROM tool_pins`, []any{}
	if upstream != "" {
		q += ` WHERE upstream = ?`
		args = append(args, upstream)
	}
	rows, err := s.query(ctx, q+` ORDER BY seen_ns, name`, args...)
	if err != nil {
		return nil, fmt.Errorf("read tool pins: %w", err)
	}
	defer rows.Close()
	var out []toolreg.Pin
	for rows.Next() {
		var p toolreg.Pin
		var seen int64
		if err := rows.Scan(&p.Upstream, &p.Name, &p.Digest, &p.Definition, &p.State, &p.Reason, &seen, &p.DecidedBy); err != nil {
			return nil, fmt.Errorf("read tool pins: %w", err)
		}
		p.SeenAt = time.Unix(0, seen).UTC()
		out = append(out, p)
	}
	return out, rows.Err()
}

// AddPin records a definition seen for the first time.
func (s *DB) AddPin(ctx context.Context, p toolreg.Pin) error {
	now := time.Now().UnixNano()
	_, err := s.exec(ctx, `INSERT INTO tool_pins(upstream, name, digest, definition, state, reason, seen_ns, decided_by, changed_ns)
		VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING`,
		p.Upstream, p.Name, p.Digest, []byte(p.Definition), p.State, p.Reason, p.SeenAt.UnixNano(), p.DecidedBy, now)
	if err != nil {
		return fmt.Errorf("add tool pin: %w", err)
	}
	return nil
}

// SetPinState approves or rejects a pin.
func (s *DB) SetPinState(ctx context.Context, upstream, name, digest, state, by string) error {
	res, err := s.exec(ctx, `UPDATE tool_pins SET state = ?, decided_by = ?, changed_ns = ? WHERE upstream = ? AND name = ? AND digest = ?`,
		state, by, time.Now().UnixNano(), upstream, name, digest)
	if err != nil {
		return fmt.Errorf("set tool pin: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("set tool pin %s/%s %s: %w", upstream, name, digest, ErrNotFound)
	}
	return nil
}

// PinsChanged returns a value that changes whenever a pin is added or
// decided.
func (s *DB) PinsChanged(ctx context.Context) (int64, error) {
	var v int64
	err := s.queryRow(ctx, `SELECT COALESCE(MAX(changed_ns), 0) + COUNT(*) FROM tool_pins`).Scan(&v)
	if err != nil {
		return 0, fmt.Errorf("read tool pins: %w", err)
	}
	return v, nil
}
