package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// PutSecret stores a sealed secret (replacing one of the same name).
func (s *DB) PutSecret(ctx context.Context, name string, sealed []byte) error {
	_, err := s.exec(ctx, `INSERT INTO secrets(name, sealed, updated_ns) VALUES (?,?,?)
		ON CONFLICT(name) DO UPDATE SET sealed = excluded.sealed, updated_ns = excluded.updated_ns`, name, sealed, time.Now().UnixNano())
	if err != nil {
		return fmt.Errorf("put secret: %w", err)
	}
	return nil
}

// GetSecret returns a sealed secret.
func (s *DB) GetSecret(ctx context.Context, name string) ([]byte, error) {
	var b []byte
	err := s.queryRow(ctx, `SELECT sealed FROM secrets WHERE name = ?`, name).Scan(&b)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get secret: %w", err)
	}
	return b, nil
}

// SecretNames lists the stored secrets' names.
func (s *DB) SecretNames(ctx context.Context) ([]string, error) {
	rows, err := s.query(ctx, `SELECT name FROM secrets ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list secrets: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, rows.Err()
}
