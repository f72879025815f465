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
	st := o.st
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
		return fmt.Errorf("revoke: unknown kind %q", kind)
	}
	e := audit.New(audit.TypeToken, audit.OutcomeInfo, code, time.Now(), who)
	e.Detail = fmt.Sprintf("by %s: %s", by, why)
	if err := audit.WriteNow(ctx, st, e); err != nil {
		return err
	}
	return st.Revoke(ctx, kind, value, by, why)
}
