package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Checkpoint is a signed tree head as stored.
type Checkpoint struct {
	Size int64
	Time time.Time
	Note []byte
}

// AddCheckpoint stores a signed checkpoint. Storing the same size twice
// keeps the first (a second, different note for one size is evidence of a
// fork and is for the verifier to find in external copies, not to overwrite).
func (s *DB) AddCheckpoint(ctx context.Context, c Checkpoint) error {
	_, err := s.exec(ctx, `INSERT INTO checkpoints(size, time_ns, note) VALUES (?,?,?) ON CONFLICT(size) DO NOTHING`,
		c.Size, c.Time.UnixNano(), c.Note)
	if err != nil {
		return fmt.Errorf("add checkpoint: %w", err)
	}
	return nil
}

// Checkpoints returns every stored checkpoint by size.
func (s *DB) Checkpoints(ctx context.Context) ([]Checkpoint, error) {
	rows, err := s.query(ctx, `SELECT size, time_ns, note FROM checkpoints ORDER BY size`)
	if err != nil {
		return nil, fmt.Errorf("read checkpoints: %w", err)
	}
	defer rows.Close()
	var out []Checkpoint
	for rows.Next() {
		var c Checkpoint
		var ns int64
		if err := rows.Scan(&c.Size, &ns, &c.Note); err != nil {
			return nil, fmt.Errorf("read checkpoints: %w", err)
		}
		c.Time = time.Unix(0, ns).UTC()
		out = append(out, c)
	}
	return out, rows.Err()
}

// ScanEvents calls fn with every event in sequence order (all columns).
func (s *DB) ScanEvents(ctx context.Context, fn func(EventRow) error) error {
	if err := s.caughtUp(ctx); err != nil {
		return err
	}
	rows, err := s.query(ctx, `SELECT `+eventColumns+` FROM events ORDER BY seq`)
	if err != nil {
		return fmt.Errorf("scan events: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var r EventRow
		var ns int64
		if err := rows.Scan(&r.Seq, &ns, &r.Type, &r.RequestID, &r.TraceID, &r.Agent, &r.SessionID, &r.LeafHash, &r.Body); err != nil {
			return fmt.Errorf("scan events: %w", err)
		}
		r.Time = time.Unix(0, ns).UTC()
		if err := fn(r); err != nil {
			return err
		}
	}
	return rows.Err()
}

// PruneBodies removes the bodies of events older than before, keeping their
// leaf hashes so that the log still verifies. It is the one change the store
// makes to existing events; the caller records it as an event.
func (s *DB) PruneBodies(ctx context.Context, before time.Time) (int64, error) {
	res, err := s.exec(ctx, `UPDATE events SET body = NULL WHERE time_ns < ? AND body IS NOT NULL`, before.UnixNano())
	if err != nil {
		return 0, fmt.Errorf("prune event bodies: %w", err)
	}
	return res.RowsAffected()
}

// Cursor returns the last event sequence number exported to the named sink
// (0 if none).
func (s *DB) Cursor(ctx context.Context, name string) (int64, error) {
	var seq int64
	err := s.queryRow(ctx, `SELECT seq FROM export_cursors WHERE name = ?`, name).Scan(&seq)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read export cursor: %w", err)
	}
	return seq, nil
}

// SetCursor records that the named sink has received every event up to seq.
func (s *DB) SetCursor(ctx context.Context, name string, seq int64) error {
	// Forward only: a second exporter (another gateway of a fleet) that
	// finished an older batch later does not move the cursor back.
	_, err := s.exec(ctx, `INSERT INTO export_cursors(name, seq) VALUES (?, ?)
		ON CONFLICT(name) DO UPDATE SET seq = excluded.seq WHERE export_cursors.seq < excluded.seq`, name, seq)
	if err != nil {
		return fmt.Errorf("write export cursor: %w", err)
	}
	return nil
}

// SaveBundle keeps a policy bundle's sources under its version, so that
// decisions can be replayed under the policy that made them.
func (s *DB) SaveBundle(ctx context.Context, version string, sources []byte) error {
	_, err := s.exec(ctx, `INSERT INTO policy_bundles(version, time_ns, sources) VALUES (?,?,?) ON CONFLICT(version) DO NOTHING`,
		version, time.Now().UnixNano(), sources)
	if err != nil {
		return fmt.Errorf("save policy bundle: %w", err)
	}
	return nil
}

// Bundle returns the sources saved under version.
func (s *DB) Bundle(ctx context.Context, version string) ([]byte, error) {
	var b []byte
	err := s.queryRow(ctx, `SELECT sources FROM policy_bundles WHERE version = ?`, version).Scan(&b)
	if err != nil {
		return nil, fmt.Errorf("read policy bundle %s: %w", version, err)
	}
	return b, nil
}

// BundleInfo is a kept policy bundle: its version and when it was first
// saved.
type BundleInfo struct {
	Version string
	Saved   time.Time
}

// Bundles lists the kept policy bundles, oldest first.
func (s *DB) Bundles(ctx context.Context) ([]BundleInfo, error) {
	rows, err := s.query(ctx, `SELECT version, time_ns FROM policy_bundles ORDER BY time_ns, version`)
	if err != nil {
		return nil, fmt.Errorf("list policy bundles: %w", err)
	}
	defer rows.Close()
	var out []BundleInfo
	for rows.Next() {
		var b BundleInfo
		var ns int64
		if err := rows.Scan(&b.Version, &ns); err != nil {
			return nil, err
		}
		b.Saved = time.Unix(0, ns)
		out = append(out, b)
	}
	return out, rows.Err()
}

// Policy pointers: the last bundle the gateway loaded and verified
// (PolicyLastGood), and the one an operator rolled back to
// (PolicyRollback), which the gateway serves instead of its files until
// it is released.
const (
	PolicyLastGood = "last_good"
	PolicyRollback = "rollback"
)

// PolicyPointer is where a pointer stands.
type PolicyPointer struct {
	Version, By string
	Time        time.Time
}

// SetPolicyPointer points name at version (a kept bundle).
func (s *DB) SetPolicyPointer(ctx context.Context, name, version, by string) error {
	_, err := s.exec(ctx, `INSERT INTO policy_pointers(name, version, by, time_ns) VALUES (?,?,?,?)
		ON CONFLICT(name) DO UPDATE SET version = excluded.version, by = excluded.by, time_ns = excluded.time_ns`, name, version, by, time.Now().UnixNano())
	if err != nil {
		return fmt.Errorf("set policy pointer %s: %w", name, err)
	}
	return nil
}

// PolicyPointer reads a pointer (ok false: not set).
func (s *DB) PolicyPointer(ctx context.Context, name string) (PolicyPointer, bool, error) {
	var p PolicyPointer
	var ns int64
	err := s.queryRow(ctx, `SELECT version, by, time_ns FROM policy_pointers WHERE name = ?`, name).Scan(&p.Version, &p.By, &ns)
	if errors.Is(err, sql.ErrNoRows) {
		return p, false, nil
	}
	if err != nil {
		return p, false, fmt.Errorf("read policy pointer %s: %w", name, err)
	}
	p.Time = time.Unix(0, ns)
	return p, true, nil
}

// ClearPolicyPointer removes a pointer.
func (s *DB) ClearPolicyPointer(ctx context.Context, name string) error {
	_, err := s.exec(ctx, `DELETE FROM policy_pointers WHERE name = ?`, name)
	return err
}

// LatestCheckpoint returns the largest checkpoint (ok false: none yet).
func (s *DB) LatestCheckpoint(ctx context.Context) (Checkpoint, bool, error) {
	var c Checkpoint
	var ns int64
	err := s.queryRow(ctx, `SELECT size, time_ns, note FROM checkpoints ORDER BY size DESC LIMIT 1`).Scan(&c.Size, &ns, &c.Note)
	if errors.Is(err, sql.ErrNoRows) {
		return c, false, nil
	}
	if err != nil {
		return c, false, fmt.Errorf("read checkpoints: %w", err)
	}
	c.Time = time.Unix(0, ns).UTC()
	return c, true, nil
}

// SeqSince returns the first event at or after t, found by bisecting the
// log by sequence number (event times follow the sequence, up to the
// recorder's batching): reading a recent window starts there instead of
// scanning back through the whole log. With no event that recent it
// returns the log's size plus one.
func (s *DB) SeqSince(ctx context.Context, t time.Time) (int64, error) {
	st, err := s.State(ctx)
	if err != nil {
		return 0, err
	}
	lo, hi := int64(1), st.Size+1 // the answer is in [lo, hi]
	for lo < hi {
		mid := lo + (hi-lo)/2
		var ns int64
		err := s.queryRow(ctx, `SELECT time_ns FROM events WHERE seq = ?`, mid).Scan(&ns)
		if err != nil {
			return 0, fmt.Errorf("bisect events: %w", err)
		}
		if ns >= t.UnixNano() {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo, nil
}

// CountEvents counts the events of type typ after seq (the type index
// alone: no event is read).
func (s *DB) CountEvents(ctx context.Context, typ string, afterSeq int64) (int64, error) {
	if err := s.caughtUp(ctx); err != nil {
		return 0, err
	}
	var n int64
	if err := s.queryRow(ctx, `SELECT count(*) FROM events WHERE type = ? AND seq > ?`, typ, afterSeq).Scan(&n); err != nil {
		return 0, fmt.Errorf("count events: %w", err)
	}
	return n, nil
}

// CountEventsBetween counts the events of type typ with after < seq <=
// upTo (the type index alone).
func (s *DB) CountEventsBetween(ctx context.Context, typ string, after, upTo int64) (int64, error) {
	if err := s.caughtUp(ctx); err != nil {
		return 0, err
	}
	var n int64
	if err := s.queryRow(ctx, `SELECT count(*) FROM events WHERE type = ? AND seq > ? AND seq <= ?`, typ, after, upTo).Scan(&n); err != nil {
		return 0, fmt.Errorf("count events: %w", err)
	}
	return n, nil
}
