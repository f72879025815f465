package ops

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/portcullis-dev/portcullis/internal/approval"
	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/reason"
	"github.com/portcullis-dev/portcullis/internal/store"
)

// ListApprovals returns requests in a state ("" for all).
func (o *Ops) ListApprovals(ctx context.Context, state string) ([]*approval.Request, error) {
	st := o.st
	return st.Approvals(ctx, state)
}

// ShowApproval returns one request.
func (o *Ops) ShowApproval(ctx context.Context, id string) (*approval.Request, error) {
	r, err := o.st.Approval(ctx, id)
	return r, approvalNotFound(id, err)
}

// approvalNotFound says which request was not found and where to look.
func approvalNotFound(id string, err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("approval request %q: %w (`portcullis approvals list --state all` shows the requests)", id, err)
	}
	return err
}

// DecideApproval records a reviewer's decision and audits it. The held call
// sees it within approval.PollInterval.
func (o *Ops) DecideApproval(ctx context.Context, id, state, by, scope, comment string) (*approval.Request, error) {
	if err := attributed(by); err != nil {
		return nil, err
	}
	// Separation of duties beyond the exact name: an admin known as the
	// request's user by another identity (an identity provider's email)
	// may not decide it either.
	r, err := o.st.Approval(ctx, id)
	if err != nil {
		return nil, approvalNotFound(id, err) // fail closed: the check cannot run
	}
	if r.User != "" {
		a, ok := o.cfg.AdminNamed(by)
		// A person the console let in by group is "idp:<their name>".
		if config.SameName(strings.TrimPrefix(by, "idp:"), r.User) || ok && a.Is(r.User) {
			return nil, approval.ErrSelfApproval
		}
	}
	record := func(r *approval.Request) error {
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
		return audit.WriteNow(ctx, o.st, e)
	}
	decided, err := approval.Decide(ctx, o.st, id, state, by, scope, comment, time.Now(), record)
	if err != nil {
		return nil, approvalNotFound(id, err)
	}
	return decided, nil
}
