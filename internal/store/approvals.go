package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/portcullis-dev/portcullis/internal/approval"
)

var _ approval.Store = (*DB)(nil)

const approvalCols = `id, agent, user_name, task, session_id, request_id, tool, arguments, args_sha256, reasons, findings, created_ns, expires_ns, state, scope, decided_by, decided_ns, comment`

// AddApproval stores a pending request.
func (s *DB) AddApproval(ctx context.Context, r *approval.Request) error {
	reasons, _ := json.Marshal(r.Reasons)
	findings, _ := json.Marshal(r.Findings)
	_, err := s.exec(ctx, `INSERT INTO approvals(`+approvalCols+`) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
		r.ID, r.Agent, r.User, r.Task, r.SessionID, r.RequestID, r.Tool, []byte(r.Arguments), r.ArgsSHA256,
		string(reasons), string(findings), r.Created.UnixNano(), r.Expires.UnixNano(), r.State, r.Scope, "", 0, "")
	if err != nil {
		return fmt.Errorf("add approval: %w", err)
	}
	return nil
}

// Approval returns one request.
func (s *DB) Approval(ctx context.Context, id string) (*approval.Request, error) {
	return scanApproval(s.queryRow(ctx, `SELECT `+approvalCols+` FROM approvals WHERE id = ?`, id))
}

// Approvals returns the requests in a state (all if state is empty), newest last.
func (s *DB) Approvals(ctx context.Context, state string) ([]*approval.Request, error) {
	q, args := `SELECT `+approvalCols+` FROM approvals`, []any{}
	if state != "" {
		q += ` WHERE state = ?`
		args = append(args, state)
	}
	return s.queryApprovals(ctx, q+` ORDER BY created_ns LIMIT 1000`, args...)
}

// DecideApproval moves a pending request to state.
func (s *DB) DecideApproval(ctx context.Context, id, state, by, scope, comment string, at time.Time) error {
	res, err := s.exec(ctx, `UPDATE approvals SET state = ?, decided_by = ?, scope = ?, comment = ?, decided_ns = ? WHERE id = ? AND state = 'pending'`,
		state, by, scope, comment, at.UnixNano(), id)
	if err != nil {
		return fmt.Errorf("decide approval: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return approval.ErrNotPending
	}
	return nil
}

// ConsumeApproval uses an approved request once.
func (s *DB) ConsumeApproval(ctx context.Context, id string) error {
	res, err := s.exec(ctx, `UPDATE approvals SET state = 'consumed' WHERE id = ? AND state = 'approved'`, id)
	if err != nil {
		return fmt.Errorf("consume approval: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return errors.New("consume approval: not approved, or already used")
	}
	return nil
}

// SessionApproval returns a used approval with session scope for this
// agent, session and tool, if any.
func (s *DB) SessionApproval(ctx context.Context, agent, sessionID, tool string) (*approval.Request, error) {
	r, err := scanApproval(s.queryRow(ctx, `SELECT `+approvalCols+` FROM approvals
		WHERE agent = ? AND session_id = ? AND tool = ? AND scope = 'session' AND state = 'consumed' ORDER BY created_ns DESC LIMIT 1`,
		agent, sessionID, tool))
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	return r, err
}

func scanApproval(sc scanner) (*approval.Request, error) {
	var r approval.Request
	var args []byte
	var reasons, findings string
	var created, expires, decided int64
	err := sc.Scan(&r.ID, &r.Agent, &r.User, &r.Task, &r.SessionID, &r.RequestID, &r.Tool, &args, &r.ArgsSHA256,
		&reasons, &findings, &created, &expires, &r.State, &r.Scope, &r.DecidedBy, &decided, &r.DenyComment)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("read approval: %w", err)
	}
	r.Arguments = args
	json.Unmarshal([]byte(reasons), &r.Reasons)
	json.Unmarshal([]byte(findings), &r.Findings)
	r.Created, r.Expires = time.Unix(0, created).UTC(), time.Unix(0, expires).UTC()
	if decided != 0 {
		r.DecidedAt = time.Unix(0, decided).UTC()
	}
	return &r, nil
}

// TaskApproval returns a used approval with task scope for this agent, task
// and tool, if any.
func (s *DB) TaskApproval(ctx context.Context, agent, task, tool string) (*approval.Request, error) {
	r, err := scanApproval(s.queryRow(ctx, `SELECT `+approvalCols+` FROM approvals
		WHERE agent = ? AND task = ? AND tool = ? AND scope = 'task' AND state = 'consumed' ORDER BY created_ns DESC LIMIT 1`,
		agent, task, tool))
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	return r, err
}

// RecentApprovals returns the requests created since then, newest first
// (at most MaxQueryLimit).
func (s *DB) RecentApprovals(ctx context.Context, since time.Time) ([]*approval.Request, error) {
	return s.queryApprovals(ctx, `SELECT `+approvalCols+` FROM approvals WHERE created_ns >= ? ORDER BY created_ns DESC LIMIT ?`, since.UnixNano(), MaxQueryLimit)
}

// PendingApprovals returns the requests still pending and not expired at
// now, oldest first (at most limit).
func (s *DB) PendingApprovals(ctx context.Context, now time.Time, limit int) ([]*approval.Request, error) {
	return s.queryApprovals(ctx, `SELECT `+approvalCols+` FROM approvals WHERE state = ? AND expires_ns > ? ORDER BY created_ns LIMIT ?`, approval.Pending, now.UnixNano(), limit)
}

// DecidedApprovals returns the latest decided requests, newest first.
func (s *DB) DecidedApprovals(ctx context.Context, limit int) ([]*approval.Request, error) {
	return s.queryApprovals(ctx, `SELECT `+approvalCols+` FROM approvals WHERE decided_ns > 0 ORDER BY decided_ns DESC LIMIT ?`, limit)
}

func (s *DB) queryApprovals(ctx context.Context, q string, args ...any) ([]*approval.Request, error) {
	rows, err := s.query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("read approvals: %w", err)
	}
	defer rows.Close()
	var out []*approval.Request
	for rows.Next() {
		r, err := scanApproval(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}
