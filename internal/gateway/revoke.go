package gateway

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/reason"
	"github.com/portcullis-dev/portcullis/internal/store"
	"github.com/portcullis-dev/portcullis/internal/token"
)

// RevocationRefresh is how often the gateway re-reads revocations written by
// another process (the CLI). A revocation takes effect on the first request
// after that.
const RevocationRefresh = 250 * time.Millisecond

// revocations is the gateway's view of what is revoked.
type revocations struct {
	cur atomic.Pointer[map[string]map[string]bool]
}

func (rv *revocations) refresh(ctx context.Context, st *store.SQLite) error {
	m, err := st.Revocations(ctx)
	if err != nil {
		return err
	}
	rv.cur.Store(&m)
	return nil
}

// run refreshes the view every RevocationRefresh until ctx ends.
func (rv *revocations) run(ctx context.Context, st *store.SQLite) error {
	t := time.NewTicker(RevocationRefresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			rv.refresh(ctx, st) // on error the last view stays in force
		}
	}
}

// revoked reports whether a credential is revoked: its ID, its agent, or
// (task tokens) its task, which covers every token delegated within it.
func (rv *revocations) revoked(agent, credentialID, task string) bool {
	p := rv.cur.Load()
	if p == nil {
		return true // not loaded: fail closed
	}
	m := *p
	return m[store.RevokeAgent][agent] || m[store.RevokeToken][credentialID] || (task != "" && m[store.RevokeTask][task])
}

func (g *Gateway) revoked(t token.Task) bool {
	return g.authn.revs != nil && g.authn.revs.revoked(t.Agent, t.TokenID, t.ID)
}

// Revoke records a revocation (`portcullis task revoke`, `token revoke`,
// `agent revoke`) and audits it. A running gateway refuses the credentials
// from its next request (within RevocationRefresh).
func Revoke(ctx context.Context, cfg *config.Config, kind, value, by, why string) error {
	st, err := store.Open(filepath.Join(DataDir(cfg), StoreFile))
	if err != nil {
		return err
	}
	defer st.Close()
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
