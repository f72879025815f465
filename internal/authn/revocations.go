package authn

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/portcullis-dev/portcullis/internal/store"
)

// RevocationRefresh is how often the gateway re-reads revocations written by
// another process (the CLI). A revocation takes effect on the first request
// after that.
const RevocationRefresh = 250 * time.Millisecond

// Revocations is the gateway's view of what is revoked. The zero value
// counts everything as revoked until the first Refresh.
type Revocations struct {
	cur atomic.Pointer[map[string]map[string]bool]
}

// RevocationStore is where revocations are recorded.
type RevocationStore interface {
	Revocations(ctx context.Context) (map[string]map[string]bool, error)
}

// Refresh reads the revocations now.
func (rv *Revocations) Refresh(ctx context.Context, st RevocationStore) error {
	m, err := st.Revocations(ctx)
	if err != nil {
		return err
	}
	rv.cur.Store(&m)
	return nil
}

// Run refreshes the view every RevocationRefresh until ctx ends.
func (rv *Revocations) Run(ctx context.Context, st RevocationStore) error {
	t := time.NewTicker(RevocationRefresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			rv.Refresh(ctx, st) // on error the last view stays in force
		}
	}
}

// Revoked reports whether a credential is revoked: its ID, its agent, or
// (task tokens) its task, which covers every token delegated within it.
func (rv *Revocations) Revoked(agent, credentialID, task string) bool {
	p := rv.cur.Load()
	if p == nil {
		return true // not loaded: fail closed
	}
	m := *p
	return m[store.RevokeAgent][agent] || m[store.RevokeToken][credentialID] || (task != "" && m[store.RevokeTask][task])
}
