package approval

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// States of a request.
const (
	Pending  = "pending"
	Approved = "approved"
	Denied   = "denied"
	Expired  = "expired"
	Consumed = "consumed"
)

// Scopes of an approval.
const (
	ScopeOnce    = "once"
	ScopeSession = "session" // also the tool for the rest of the agent's session
	ScopeTask    = "task"    // also the tool for the rest of the agent's task
)

// Limits.
const (
	PollInterval   = 200 * time.Millisecond
	DefaultTimeout = 5 * time.Minute
	MaxTimeout     = time.Hour
	MaxShownArgs   = 64 << 10
)

// Request is a held call awaiting a human decision.
type Request struct {
	ID          string
	Agent       string
	User        string
	Task        string
	SessionID   string
	RequestID   string
	Tool        string
	Arguments   json.RawMessage // as sent, for the reviewer (never in audit events)
	ArgsSHA256  string
	Reasons     []string // why approval is needed (@approval texts)
	Findings    []string // screening findings in the arguments, session labels, argument provenance
	Created     time.Time
	Expires     time.Time
	State       string
	Scope       string
	DecidedBy   string
	DecidedAt   time.Time
	DenyComment string
}

// Describe renders the request for a reviewer.
func (r *Request) Describe() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Approval %s (%s)\n", r.ID, r.State)
	fmt.Fprintf(&b, "  agent     %s\n", r.Agent)
	if r.User != "" {
		fmt.Fprintf(&b, "  for user  %s\n", r.User)
	}
	if r.Task != "" {
		fmt.Fprintf(&b, "  task      %s\n", r.Task)
	}
	fmt.Fprintf(&b, "  tool      %s\n", r.Tool)
	fmt.Fprintf(&b, "  why       %s\n", strings.Join(r.Reasons, "; "))
	if len(r.Findings) > 0 {
		fmt.Fprintf(&b, "  findings  %s\n", strings.Join(r.Findings, "; "))
	}
	fmt.Fprintf(&b, "  requested %s, expires %s\n", r.Created.Local().Format(time.RFC3339), r.Expires.Local().Format(time.RFC3339))
	fmt.Fprintf(&b, "  arguments (sha256 %s):\n%s\n", r.ArgsSHA256, indentJSON(r.Arguments))
	if r.DecidedBy != "" {
		fmt.Fprintf(&b, "  decided   %s by %s at %s (scope %s)\n", r.State, r.DecidedBy, r.DecidedAt.Local().Format(time.RFC3339), r.Scope)
	}
	return b.String()
}

func indentJSON(raw json.RawMessage) string {
	if len(raw) > MaxShownArgs {
		return fmt.Sprintf("    (%d bytes, not shown)", len(raw))
	}
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return "    " + string(raw)
	}
	out, _ := json.MarshalIndent(v, "    ", "  ")
	return "    " + string(out)
}

// Store persists requests. Decide and Consume are conditional updates: they
// succeed only from the expected state, so two reviewers or two uses race
// safely.
type Store interface {
	AddApproval(ctx context.Context, r *Request) error
	Approval(ctx context.Context, id string) (*Request, error)
	Approvals(ctx context.Context, state string) ([]*Request, error)
	DecideApproval(ctx context.Context, id, state, by, scope, comment string, at time.Time) error
	ConsumeApproval(ctx context.Context, id string) error
	SessionApproval(ctx context.Context, agent, sessionID, tool string) (*Request, error)
	TaskApproval(ctx context.Context, agent, task, tool string) (*Request, error)
}

// Errors.
var (
	ErrSelfApproval = errors.New("approval: the principal that asked cannot decide")
	ErrNotPending   = errors.New("approval: not pending (already decided, or expired)")
)

// Notifier tells reviewers about a new request.
type Notifier interface {
	Notify(ctx context.Context, r *Request) error
}

// Queue holds calls for approval.
type Queue struct {
	Store    Store
	Notifier Notifier // optional
	Timeout  time.Duration
	Log      *slog.Logger
	Now      func() time.Time
}

// NewRequest fills in a request's ID, times and state.
func (q *Queue) NewRequest(r *Request) error {
	var id [8]byte
	if _, err := rand.Read(id[:]); err != nil {
		return err
	}
	now := q.now()
	r.ID, r.Created, r.State, r.Scope = "ap-"+hex.EncodeToString(id[:]), now.UTC(), Pending, ScopeOnce
	t := q.Timeout
	if t <= 0 {
		t = DefaultTimeout
	}
	r.Expires = now.Add(t).UTC()
	return nil
}

func (q *Queue) now() time.Time {
	if q.Now != nil {
		return q.Now()
	}
	return time.Now()
}

// SessionGrant returns an earlier approval that covers this call: one with
// task scope for the same agent, task and tool, or with session scope for
// the same agent, session and tool.
func (q *Queue) SessionGrant(ctx context.Context, agent, task, sessionID, tool string) (*Request, bool) {
	if task != "" {
		if r, err := q.Store.TaskApproval(ctx, agent, task, tool); err == nil && r != nil {
			return r, true
		}
	}
	if sessionID == "" {
		return nil, false
	}
	r, err := q.Store.SessionApproval(ctx, agent, sessionID, tool)
	if err != nil || r == nil {
		return nil, false
	}
	return r, true
}

// Hold stores r, notifies reviewers and waits for a decision. It returns the
// final request: Consumed (approved, and this call used it), Denied or
// Expired. An error means the request could not be held; the caller denies.
func (q *Queue) Hold(ctx context.Context, r *Request) (*Request, error) {
	if err := q.Add(ctx, r); err != nil {
		return nil, err
	}
	final, err := q.Wait(ctx, r.ID)
	if err != nil && ctx.Err() != nil {
		// The caller gave up: the request is void.
		q.Store.DecideApproval(context.WithoutCancel(ctx), r.ID, Expired, "agent-cancelled", ScopeOnce, "", q.now())
	}
	return final, err
}

// Add stores r and notifies reviewers.
func (q *Queue) Add(ctx context.Context, r *Request) error {
	if err := q.Store.AddApproval(ctx, r); err != nil {
		return err
	}
	if q.Notifier != nil {
		go func() {
			nctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			if err := q.Notifier.Notify(nctx, r); err != nil {
				q.Log.Error("approval notification failed", "approval", r.ID, "err", err)
			}
		}()
	}
	return nil
}

// Wait waits for the decision on a stored request (one held before a
// restart, for instance): Consumed (approved, and used by this wait),
// Denied or Expired. Unlike Hold, giving up (ctx) leaves the request
// pending.
func (q *Queue) Wait(ctx context.Context, id string) (*Request, error) {
	r := &Request{ID: id}
	tick := time.NewTicker(PollInterval)
	defer tick.Stop()
	for {
		cur, err := q.Store.Approval(ctx, r.ID)
		if err != nil {
			return nil, err
		}
		switch cur.State {
		case Approved:
			if err := q.Store.ConsumeApproval(ctx, r.ID); err != nil {
				return nil, err
			}
			cur.State = Consumed
			return cur, nil
		case Denied, Expired, Consumed:
			return cur, nil
		}
		if !q.now().Before(cur.Expires) {
			// Expire it unless a reviewer decided at the last moment (the
			// next read sees that decision).
			if err := q.Store.DecideApproval(ctx, r.ID, Expired, "timeout", ScopeOnce, "", q.now()); err != nil && !errors.Is(err, ErrNotPending) {
				return nil, err
			}
			continue
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-tick.C:
		}
	}
}

// Decide records a reviewer's decision. The reviewer cannot be the agent
// that asked nor the user it acts for (separation of duties), and the
// request must still be pending and unexpired.
//
// record, when set, is called with the request and must succeed before the
// decision is stored (the audit record comes first: a decision that could
// not be recorded is not made).
func Decide(ctx context.Context, s Store, id, state, by, scope, comment string, now time.Time, record func(*Request) error) (*Request, error) {
	if state != Approved && state != Denied {
		return nil, fmt.Errorf("approval: decision must be %s or %s", Approved, Denied)
	}
	if scope != ScopeOnce && scope != ScopeSession && scope != ScopeTask {
		return nil, fmt.Errorf("approval: scope must be %s, %s or %s", ScopeOnce, ScopeSession, ScopeTask)
	}
	r, err := s.Approval(ctx, id)
	if err != nil {
		return nil, err
	}
	if scope == ScopeTask && r.Task == "" {
		return nil, errors.New("approval: the request belongs to no task; use once or session")
	}
	if by == "" || by == r.Agent || (r.User != "" && by == r.User) {
		return nil, ErrSelfApproval
	}
	if r.State != Pending || !now.Before(r.Expires) {
		return nil, ErrNotPending
	}
	if record != nil {
		if err := record(r); err != nil {
			return nil, err
		}
	}
	if err := s.DecideApproval(ctx, id, state, by, scope, comment, now); err != nil {
		return nil, err
	}
	return s.Approval(ctx, id)
}
