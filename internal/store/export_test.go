package store

import "context"

// ExecForTest runs a statement on the store's database (tests only).
func (s *DB) ExecForTest(ctx context.Context, q string, args ...any) error {
	_, err := s.exec(ctx, q, args...)
	return err
}
