package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/portcullis-dev/portcullis/internal/approval"
	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/outbound"
	"github.com/portcullis-dev/portcullis/internal/reason"
	"github.com/portcullis-dev/portcullis/internal/store"
)

func newApprovals(cfg *config.Config, st *store.SQLite, secrets func(string) (string, error), out *outbound.Client, log *slog.Logger) (*approval.Queue, error) {
	q := &approval.Queue{Store: st, Timeout: cfg.Approvals.Timeout.D(), Log: log}
	if w := cfg.Approvals.Webhook; w != nil {
		h, err := headers(cfg, w.Headers, secrets)
		if err != nil {
			return nil, fmt.Errorf("approvals webhook: %w", err)
		}
		q.Notifier = &approval.WebhookNotifier{URL: w.URL, Header: h, Client: out}
	}
	return q, nil
}

// ListApprovals returns requests in a state ("" for all).
func ListApprovals(ctx context.Context, cfg *config.Config, state string) ([]*approval.Request, error) {
	st, err := store.Open(filepath.Join(DataDir(cfg), StoreFile))
	if err != nil {
		return nil, err
	}
	defer st.Close()
	return st.Approvals(ctx, state)
}

// ShowApproval returns one request.
func ShowApproval(ctx context.Context, cfg *config.Config, id string) (*approval.Request, error) {
	st, err := store.Open(filepath.Join(DataDir(cfg), StoreFile))
	if err != nil {
		return nil, err
	}
	defer st.Close()
	return st.Approval(ctx, id)
}

// DecideApproval records a reviewer's decision and audits it. The held call
// sees it within approval.PollInterval.
func DecideApproval(ctx context.Context, cfg *config.Config, id, state, by, scope, comment string) (*approval.Request, error) {
	st, err := store.Open(filepath.Join(DataDir(cfg), StoreFile))
	if err != nil {
		return nil, err
	}
	defer st.Close()
	return decideApproval(ctx, st, id, state, by, scope, comment)
}

func decideApproval(ctx context.Context, st *store.SQLite, id, state, by, scope, comment string) (*approval.Request, error) {
	r, err := approval.Decide(ctx, st, id, state, by, scope, comment, time.Now())
	if err != nil {
		return nil, err
	}
	outcome, code := audit.OutcomeDeny, reason.ApprovalDenied
	if state == approval.Approved {
		outcome, code = audit.OutcomeAllow, reason.ApprovalApproved
	}
	who := audit.Subject{Agent: r.Agent, User: r.User, Task: r.Task, Credential: r.ID, SessionID: r.SessionID, RequestID: r.RequestID}
	e := audit.New(audit.TypeApproval, outcome, code, time.Now(), who)
	e.Target, e.ArgumentsSHA256 = r.Tool, r.ArgsSHA256
	e.Detail = fmt.Sprintf("%s by %s (scope %s)", state, by, scope)
	if comment != "" {
		e.Detail += ": " + comment
	}
	if err := audit.WriteNow(ctx, st, e); err != nil {
		return nil, err
	}
	return r, nil
}
