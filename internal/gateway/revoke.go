package gateway

import (
	"context"
	"sync/atomic"
	"time"

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
