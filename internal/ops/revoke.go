package ops

import (
	"context"
	"fmt"
	"time"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/reason"
	"github.com/portcullis-dev/portcullis/internal/store"
)

// Revoke records a revocation (`portcullis task revoke`, `token revoke`,
// `agent revoke`) and audits it. A running gateway refuses the credentials
// from its next request (within RevocationRefresh).
func (o *Ops) Revoke(ctx context.Context, kind, value, by, why string) error {
	if err := attributed(by); err != nil {
		return err
	}
	e, err := RevocationEvent(kind, value, by, why)
	if err != nil {
		return err
	}
	if err := audit.WriteNow(ctx, o.st, e); err != nil {
		return err
	}
	return o.st.Revoke(ctx, kind, value, by, why)
}

// RevocationEvent is the audit event of a revocation (the gateway records
// its own response's through its recorder).
func RevocationEvent(kind, value, by, why string) (*audit.Event, error) {
	var who audit.Subject
	var code reason.Code
	switch kind {
	case store.RevokeAgent:
		who.Agent, code = value, reason.AgentRevoked
	case store.RevokeTask:
		who.Task, code = value, reason.TaskRevoked
	case store.RevokeToken:
		who.Credential, code = value, reason.TokenRevoked
	default:
		return nil, fmt.Errorf("revoke: unknown kind %q", kind)
	}
	e := audit.New(audit.TypeToken, audit.OutcomeInfo, code, time.Now(), who)
	e.Detail = fmt.Sprintf("by %s: %s", by, why)
	return e, nil
}

// Unrevoke lifts a revocation (the undo of `revoke`, or of a response
// step), audited; a running gateway accepts the credentials again from
// its next revocation refresh.
func (o *Ops) Unrevoke(ctx context.Context, kind, value, by, why string) error {
	if err := attributed(by); err != nil {
		return err
	}
	var who audit.Subject
	switch kind {
	case store.RevokeAgent:
		who.Agent = value
	case store.RevokeTask:
		who.Task = value
	case store.RevokeToken:
		who.Credential = value
	default:
		return fmt.Errorf("unrevoke: unknown kind %q", kind)
	}
	revs, err := o.st.Revocations(ctx)
	if err != nil {
		return err
	}
	if !revs[kind][value] {
		return fmt.Errorf("unrevoke: %s %s is not revoked", kind, value)
	}
	// The record comes first: a lifted revocation the log lacks is not
	// lifted.
	e := audit.New(audit.TypeToken, audit.OutcomeInfo, reason.RevocationLifted, time.Now(), who)
	e.Detail = fmt.Sprintf("%s %s: revocation lifted by %s: %s", kind, value, by, why)
	if err := audit.WriteNow(ctx, o.st, e); err != nil {
		return err
	}
	_, err = o.st.Unrevoke(ctx, kind, value)
	return err
}
