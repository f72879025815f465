package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Learned baselines are one document (internal/detect's Snapshot) with a
// generation: the gateway saves over its own generation only, and an
// operator's restore bumps it, which the gateway sees and loads.

// SaveBaselines stores the gateway's learned baselines if the stored
// generation is still gen (or none is stored). It reports false when a
// restore replaced them since: the caller loads those instead.
func (s *DB) SaveBaselines(ctx context.Context, gen int64, body []byte) (bool, error) {
	res, err := s.exec(ctx, `INSERT INTO learned_baselines(id, generation, body, saved_ns) VALUES (1, ?, ?, ?)
		ON CONFLICT(id) DO UPDATE SET body = excluded.body, saved_ns = excluded.saved_ns WHERE learned_baselines.generation = excluded.generation`,
		gen, body, time.Now().UnixNano())
	if err != nil {
		return false, fmt.Errorf("save baselines: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("save baselines: %w", err)
	}
	return n == 1, nil
}

// Baselines returns the stored learned baselines, their generation and
// when they were saved (ErrNotFound: none yet).
func (s *DB) Baselines(ctx context.Context) (gen int64, body []byte, saved time.Time, err error) {
	var ns int64
	err = s.queryRow(ctx, `SELECT generation, body, saved_ns FROM learned_baselines WHERE id = 1`).Scan(&gen, &body, &ns)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil, time.Time{}, ErrNotFound
	}
	if err != nil {
		return 0, nil, time.Time{}, fmt.Errorf("read baselines: %w", err)
	}
	return gen, body, time.Unix(0, ns), nil
}

// RestoreBaselines replaces the stored learned baselines with body under a
// new generation, which it returns.
func (s *DB) RestoreBaselines(ctx context.Context, body []byte) (int64, error) {
	var gen int64
	err := s.queryRow(ctx, `INSERT INTO learned_baselines(id, generation, body, saved_ns) VALUES (1, 1, ?, ?)
		ON CONFLICT(id) DO UPDATE SET generation = learned_baselines.generation + 1, body = excluded.body, saved_ns = excluded.saved_ns
		RETURNING generation`, body, time.Now().UnixNano()).Scan(&gen)
	if err != nil {
		return 0, fmt.Errorf("restore baselines: %w", err)
	}
	return gen, nil
}
