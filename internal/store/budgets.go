package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Task budgets shared by a fleet: what each task token has spent (calls
// made, and calls handed to delegates), counted in the database so that a
// budget of N is N across every gateway.

// ReserveBudget takes n calls from the budget of task token tokenID
// (budget in all) if n are left, atomically against every other gateway.
// It returns what is left after (or, refused, what is left now).
func (s *DB) ReserveBudget(ctx context.Context, tokenID string, budget, n int) (left int, ok bool, err error) {
	if n <= 0 || budget < 0 {
		return 0, false, fmt.Errorf("reserve budget: %d of %d", n, budget)
	}
	if n > budget {
		used, err := s.budgetUsed(ctx, tokenID)
		return budget - used, false, err
	}
	var used int
	err = s.queryRow(ctx, `INSERT INTO task_budgets(token_id, used, updated_ns) VALUES (?, ?, ?)
		ON CONFLICT(token_id) DO UPDATE SET used = task_budgets.used + excluded.used, updated_ns = excluded.updated_ns
		WHERE task_budgets.used + excluded.used <= ?
		RETURNING used`, tokenID, n, time.Now().UnixNano(), budget).Scan(&used)
	switch {
	case errors.Is(err, sql.ErrNoRows): // not enough left
		used, err := s.budgetUsed(ctx, tokenID)
		return budget - used, false, err
	case err != nil:
		return 0, false, fmt.Errorf("reserve budget: %w", err)
	}
	return budget - used, true, nil
}

// BudgetLeft is what task token tokenID has left of budget.
func (s *DB) BudgetLeft(ctx context.Context, tokenID string, budget int) (int, error) {
	used, err := s.budgetUsed(ctx, tokenID)
	return budget - used, err
}

func (s *DB) budgetUsed(ctx context.Context, tokenID string) (int, error) {
	var used int
	err := s.queryRow(ctx, `SELECT used FROM task_budgets WHERE token_id = ?`, tokenID).Scan(&used)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read budget: %w", err)
	}
	return used, nil
}

// PruneBudgets forgets the budgets of tokens last used before before. A
// token lives at most the longest token lifetime from its issue, so a
// budget untouched for longer belongs to an expired token.
func (s *DB) PruneBudgets(ctx context.Context, before time.Time) (int64, error) {
	res, err := s.exec(ctx, `DELETE FROM task_budgets WHERE updated_ns < ?`, before.UnixNano())
	if err != nil {
		return 0, fmt.Errorf("prune budgets: %w", err)
	}
	return res.RowsAffected()
}

// LeaseRate grants up to want of agent's calls in the minute numbered
// minute (Unix seconds / 60) out of limit for the whole fleet, atomically
// against every other gateway, and returns how many it granted (0: the
// minute's calls are all taken). A gateway spends what it was granted
// locally and leases again when it runs out: what it leased and did not
// spend is lost to the others for that minute, so the fleet never exceeds
// limit.
func (s *DB) LeaseRate(ctx context.Context, agent string, minute int64, limit, want int) (int, error) {
	if limit <= 0 || want <= 0 {
		return 0, fmt.Errorf("lease rate: %d of %d", want, limit)
	}
	least, greatest := "MIN", "MAX"
	if s.dialect == postgres {
		least, greatest = "LEAST", "GREATEST"
	}
	first := min(want, limit)
	// Every expression of the update reads the row as it was: last_grant
	// and used take the same grant, never negative (gateways configured
	// with different limits during a change must not count calls back).
	grant := greatest + `(0, ` + least + `(?, ? - rate_windows.used))`
	var granted int
	err := s.queryRow(ctx, `INSERT INTO rate_windows(agent, minute, used, last_grant) VALUES (?, ?, ?, ?)
		ON CONFLICT(agent, minute) DO UPDATE SET
			last_grant = `+grant+`,
			used = rate_windows.used + `+grant+`
		RETURNING last_grant`, agent, minute, first, first, want, limit, want, limit).Scan(&granted)
	if err != nil {
		return 0, fmt.Errorf("lease rate: %w", err)
	}
	return max(granted, 0), nil
}

// PruneRates forgets rate windows before minute.
func (s *DB) PruneRates(ctx context.Context, minute int64) error {
	if _, err := s.exec(ctx, `DELETE FROM rate_windows WHERE minute < ?`, minute); err != nil {
		return fmt.Errorf("prune rates: %w", err)
	}
	return nil
}
