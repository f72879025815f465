package authn

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portcullis-dev/portcullis/internal/store"
)

// RevocationRefresh is how often the gateway re-reads revocations written by
// another process (the CLI). A revocation takes effect on the first request
// after that.
const RevocationRefresh = 250 * time.Millisecond

// Revocations is the gateway's view of what is revoked: revocations
// recorded by kind, and which certificate is current for each enrolled
// agent instance (a rotation supersedes the one before). The zero value
// counts everything as revoked until the first Refresh.
type Revocations struct {
	// MaxAge, if set, is how old the view may grow (no successful read
	// for that long) before every credential counts as revoked: a gateway
	// of a fleet that cannot read the shared store does not go on serving
	// agents another gateway revoked. Set before use.
	MaxAge time.Duration

	cur        atomic.Pointer[revocationView]
	synced     atomic.Int64 // unix nanoseconds of the last successful read
	refreshing sync.Mutex   // one Refresh at a time (a poll and a change feed)
}

// RefreshTimeout bounds one read of the revocations.
const RefreshTimeout = 2 * time.Second

// stale reports whether the view is older than MaxAge.
func (rv *Revocations) stale() bool {
	return rv.MaxAge > 0 && time.Since(time.Unix(0, rv.synced.Load())) > rv.MaxAge
}

// Synced is when revocations were last read from the store (zero: never).
func (rv *Revocations) Synced() time.Time {
	if ns := rv.synced.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

type revocationView struct {
	revoked map[string]map[string]bool // kind -> value
	serials map[string]string          // SPIFFE ID -> serial of its current SVID
}

// RevocationStore is where revocations and agent instances are recorded.
type RevocationStore interface {
	Revocations(ctx context.Context) (map[string]map[string]bool, error)
	Instances(ctx context.Context) ([]store.Instance, error)
}

// Refresh reads the revocations now.
func (rv *Revocations) Refresh(ctx context.Context, st RevocationStore) error {
	rv.refreshing.Lock()
	defer rv.refreshing.Unlock()
	ctx, cancel := context.WithTimeout(ctx, RefreshTimeout)
	defer cancel()
	// A view read before an Enrolled must not overwrite it: swap only
	// if nothing changed meanwhile (the next refresh reads it anyway).
	old := rv.cur.Load()
	m, err := st.Revocations(ctx)
	if err != nil {
		return err
	}
	ins, err := st.Instances(ctx)
	if err != nil {
		return err
	}
	v := &revocationView{revoked: m, serials: make(map[string]string, len(ins))}
	for _, in := range ins {
		v.serials[in.SPIFFEID] = in.Serial
	}
	rv.cur.CompareAndSwap(old, v)
	rv.synced.Store(time.Now().UnixNano())
	return nil
}

// Run refreshes the view every RevocationRefresh until ctx ends. On an
// error the last view stays in force; log hears when refreshing starts
// and stops failing (a revocation made meanwhile is not yet in force).
func (rv *Revocations) Run(ctx context.Context, st RevocationStore, log *slog.Logger) error {
	t := time.NewTicker(RevocationRefresh)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			err := rv.Refresh(ctx, st)
			switch {
			case err != nil && !failing && ctx.Err() == nil:
				log.Error("revocations cannot be read; the last view stays in force", "err", err)
				failing = true
			case err == nil && failing:
				log.Info("revocations read again")
				failing = false
			}
		}
	}
}

// Revoked reports whether a credential is revoked: its ID, its agent, or
// (task tokens) its task, which covers every token delegated within it.
func (rv *Revocations) Revoked(agent, credentialID, task string) bool {
	v := rv.cur.Load()
	if v == nil || rv.stale() {
		return true // not loaded, or too old to trust: fail closed
	}
	m := v.revoked
	return m[store.RevokeAgent][agent] || m[store.RevokeToken][credentialID] || (task != "" && m[store.RevokeTask][task])
}

// Superseded reports whether serial is not the current certificate of the
// agent instance spiffeID: rotated away, or never recorded (every SVID the
// CA issues is recorded before it is released).
func (rv *Revocations) Superseded(spiffeID, serial string) bool {
	v := rv.cur.Load()
	if v == nil || rv.stale() {
		return true // not loaded, or too old to trust: fail closed
	}
	cur, ok := v.serials[spiffeID]
	return !ok || cur != serial
}

// Enrolled makes serial the current SVID of spiffeID at once, for an SVID
// this gateway has just issued and recorded (the next Refresh reads the
// same from the store): the agent can use it on its next request, and the
// certificate it replaces stops working.
func (rv *Revocations) Enrolled(spiffeID, serial string) {
	for {
		old := rv.cur.Load()
		if old == nil {
			return // not loaded: everything is refused until the first Refresh
		}
		v := &revocationView{revoked: old.revoked, serials: make(map[string]string, len(old.serials)+1)}
		for k, s := range old.serials {
			v.serials[k] = s
		}
		v.serials[spiffeID] = serial
		if rv.cur.CompareAndSwap(old, v) {
			return
		}
	}
}
