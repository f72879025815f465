package store

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// MemoryElement is one version of an element of agent memory
// (internal/memory): every change is a new row, the current state of a
// (scope, key) is its newest row. SHA256 is the version's hash, also
// committed to the audit log when the version was written.
type MemoryElement struct {
	ID         int64
	Scope, Key string
	Kind       string
	Body       []byte // nil once purged
	State      string
	Agent      string
	User       string
	Task       string
	Session    string
	RequestID  string
	Labels     []string
	Untrusted  bool
	Findings   []string
	By         string
	Created    time.Time
	Expires    time.Time // zero: never
	SHA256     []byte
}

const memoryColumns = `id, scope, key, kind, body, state, agent, user_name, task, session_id, request_id, labels, untrusted, findings, by, created_ns, expires_ns, sha256`

// ReserveMemoryIDs reserves n version IDs for the caller alone (whatever
// other process writes too) and returns the first: the caller hashes and
// commits its versions under IDs no one else will use.
func (s *DB) ReserveMemoryIDs(ctx context.Context, n int) (int64, error) {
	var first int64
	err := s.queryRow(ctx, `INSERT INTO memory_ids(id, next) VALUES (1, (SELECT COALESCE(MAX(id), 0) + 1 FROM memory_elements) + ?)
		ON CONFLICT(id) DO UPDATE SET next = memory_ids.next + ? RETURNING next - ?`, n, n, n).Scan(&first)
	if err != nil {
		return 0, fmt.Errorf("memory: %w", err)
	}
	return first, nil
}

// AddMemory inserts versions (each with its ID already set) in one
// transaction.
func (s *DB) AddMemory(ctx context.Context, es []MemoryElement) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("memory: %w", err)
	}
	defer tx.Rollback()
	for _, e := range es {
		_, err := s.execOn(ctx, tx, `INSERT INTO memory_elements(`+memoryColumns+`) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
			e.ID, e.Scope, e.Key, e.Kind, e.Body, e.State, e.Agent, e.User, e.Task, e.Session, e.RequestID,
			strings.Join(e.Labels, ","), e.Untrusted, strings.Join(e.Findings, ","), e.By, e.Created.UnixNano(), nanos(e.Expires), e.SHA256)
		if err != nil {
			return fmt.Errorf("memory: %w", err) // IDs are reserved (ReserveMemoryIDs): a clash is a bug
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("memory: %w", err)
	}
	return nil
}

func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// MemoryQuery selects versions.
type MemoryQuery struct {
	Scopes []string // current elements of these scopes (with Current)
	Kinds  []string
	// Current selects each (scope, key)'s newest version at or before
	// AsOf (0: now), whatever its state.
	Current bool
	AsOf    int64
	// Session selects the versions a session wrote; ID one version.
	Session string
	ID      int64
	Limit   int
}

// MemoryElements returns versions matching q, in ID order.
func (s *DB) MemoryElements(ctx context.Context, q MemoryQuery) ([]MemoryElement, error) {
	var where []string
	var args []any
	if q.ID != 0 {
		where, args = append(where, "m.id = ?"), append(args, q.ID)
	}
	if q.Session != "" {
		where, args = append(where, "m.session_id = ?"), append(args, q.Session)
	}
	if len(q.Scopes) > 0 {
		where = append(where, "m.scope IN ("+strings.TrimSuffix(strings.Repeat("?,", len(q.Scopes)), ",")+")")
		for _, sc := range q.Scopes {
			args = append(args, sc)
		}
	}
	if len(q.Kinds) > 0 {
		where = append(where, "m.kind IN ("+strings.TrimSuffix(strings.Repeat("?,", len(q.Kinds)), ",")+")")
		for _, k := range q.Kinds {
			args = append(args, k)
		}
	}
	if q.Current {
		asOf := q.AsOf
		if asOf <= 0 {
			asOf = 1<<62 - 1
		}
		where = append(where, "m.id = (SELECT MAX(id) FROM memory_elements x WHERE x.scope = m.scope AND x.key = m.key AND x.id <= ?)")
		args = append(args, asOf)
	}
	query := `SELECT ` + prefixed("m.", memoryColumns) + ` FROM memory_elements m`
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	query += " ORDER BY m.id"
	if q.Limit > 0 {
		query += fmt.Sprintf(" LIMIT %d", q.Limit)
	}
	rows, err := s.query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("memory: %w", err)
	}
	defer rows.Close()
	var out []MemoryElement
	for rows.Next() {
		var e MemoryElement
		var labels, findings string
		var created, expires int64
		if err := rows.Scan(&e.ID, &e.Scope, &e.Key, &e.Kind, &e.Body, &e.State, &e.Agent, &e.User, &e.Task, &e.Session, &e.RequestID,
			&labels, &e.Untrusted, &findings, &e.By, &created, &expires, &e.SHA256); err != nil {
			return nil, fmt.Errorf("memory: %w", err)
		}
		e.Labels, e.Findings = split(labels), split(findings)
		e.Created = time.Unix(0, created)
		if expires != 0 {
			e.Expires = time.Unix(0, expires)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

func prefixed(p, cols string) string {
	parts := strings.Split(cols, ", ")
	for i := range parts {
		parts[i] = p + parts[i]
	}
	return strings.Join(parts, ", ")
}

func split(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// PurgeMemory erases the content of every version of (scope, key), and
// the key itself (a name) in favour of newKey: what a purge removes for
// good (the hashes stay in the audit log).
func (s *DB) PurgeMemory(ctx context.Context, scope, key, newKey string) error {
	if _, err := s.exec(ctx, `UPDATE memory_elements SET body = NULL, key = ? WHERE scope = ? AND key = ?`, newKey, scope, key); err != nil {
		return fmt.Errorf("memory: %w", err)
	}
	return nil
}

// CountMemory counts the current active or quarantined elements of scope.
func (s *DB) CountMemory(ctx context.Context, scope string) (int, error) {
	var n int
	err := s.queryRow(ctx, `SELECT COUNT(*) FROM memory_elements m WHERE m.scope = ? AND m.state IN ('active', 'quarantined')
		AND m.id = (SELECT MAX(id) FROM memory_elements x WHERE x.scope = m.scope AND x.key = m.key)`, scope).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("memory: %w", err)
	}
	return n, nil
}

// ExpiredMemory returns the current versions, active or quarantined,
// whose expiry is before now.
func (s *DB) ExpiredMemory(ctx context.Context, now time.Time, limit int) ([]MemoryElement, error) {
	rows, err := s.query(ctx, `SELECT m.id FROM memory_elements m WHERE m.expires_ns != 0 AND m.expires_ns < ? AND m.state IN ('active', 'quarantined')
		AND m.id = (SELECT MAX(id) FROM memory_elements x WHERE x.scope = m.scope AND x.key = m.key) ORDER BY m.id LIMIT ?`, now.UnixNano(), limit)
	if err != nil {
		return nil, fmt.Errorf("memory: %w", err)
	}
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, err
		}
		ids = append(ids, id)
	}
	rows.Close()
	var out []MemoryElement
	for _, id := range ids {
		es, err := s.MemoryElements(ctx, MemoryQuery{ID: id})
		if err != nil {
			return nil, err
		}
		out = append(out, es...)
	}
	return out, nil
}
