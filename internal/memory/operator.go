package memory

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/reason"
	"github.com/portcullis-dev/portcullis/internal/store"
)

// What operators do with memory (`portcullis memory ...`): read the
// versions, quarantine, release, purge, roll back; and the expiry sweep.
// Every one is a new version committed like an agent's write, attributed
// to the operator.

// Log returns versions (of a scope, a session, or all), oldest first.
func (s *Service) Log(ctx context.Context, scope, session string, limit int) ([]store.MemoryElement, error) {
	q := store.MemoryQuery{Session: session, Limit: limit}
	if scope != "" {
		q.Scopes = []string{scope}
	}
	return s.o.Store.MemoryElements(ctx, q)
}

// Version returns one version, and whether it verifies against the log.
func (s *Service) Version(ctx context.Context, id int64) (*store.MemoryElement, bool, error) {
	es, err := s.o.Store.MemoryElements(ctx, store.MemoryQuery{ID: id})
	if err != nil {
		return nil, false, err
	}
	if len(es) == 0 {
		return nil, false, fmt.Errorf("memory: no version %d", id)
	}
	e := es[0]
	want, ok := s.committed(ctx, id)
	return &e, ok && want == hashOf(&e), nil
}

// current returns the current version of the element version id belongs
// to.
func (s *Service) current(ctx context.Context, id int64) (*store.MemoryElement, error) {
	v, _, err := s.Version(ctx, id)
	if err != nil {
		return nil, err
	}
	es, err := s.o.Store.MemoryElements(ctx, store.MemoryQuery{Scopes: []string{v.Scope}, Current: true})
	if err != nil {
		return nil, err
	}
	for i := range es {
		if es[i].Key == v.Key {
			return &es[i], nil
		}
	}
	return nil, fmt.Errorf("memory: version %d has no current state", id)
}

// restate writes a new version of e (content and attribution kept) in
// state, by an operator. A version that does not verify is not carried
// forward: releasing or quarantining it is refused (purging it is not).
func (s *Service) restate(ctx context.Context, e store.MemoryElement, state, by, why string, code reason.Code) error {
	operator := Caller{Agent: by}
	if state != Purged && !s.check(ctx, operator, e) {
		return fmt.Errorf("memory: version %d does not verify against the audit log: purge it or roll back", e.ID)
	}
	e.State, e.By = state, by
	if state == Purged {
		e.Body = nil
	}
	ev := audit.New(audit.TypeMemory, audit.OutcomeInfo, code, s.o.Now(), audit.Subject{Agent: e.Agent, User: e.User, Task: e.Task, SessionID: e.Session})
	ev.Target, ev.Labels = e.Scope, e.Labels
	ev.Detail = fmt.Sprintf("%s %s by %s: %s", e.Key, state, by, why)
	return s.commit(ctx, []store.MemoryElement{e}, ev)
}

// ErrState: the element is not in the state the operation needs.
var ErrState = errors.New("memory: the element is not in a state this applies to")

// Release returns a quarantined element to agents (its labels and
// provenance kept: whoever reads it still takes them).
func (s *Service) Release(ctx context.Context, id int64, by, why string) error {
	e, err := s.current(ctx, id)
	if err != nil {
		return err
	}
	if e.State != Quarantined {
		return fmt.Errorf("%w: %s is %s", ErrState, e.Key, e.State)
	}
	return s.restate(ctx, *e, Active, by, why, reason.MemoryReleased)
}

// Quarantine withholds an active element from agents.
func (s *Service) Quarantine(ctx context.Context, id int64, by, why string) error {
	e, err := s.current(ctx, id)
	if err != nil {
		return err
	}
	if e.State != Active {
		return fmt.Errorf("%w: %s is %s", ErrState, e.Key, e.State)
	}
	return s.restate(ctx, *e, Quarantined, by, why, reason.MemoryQuarantined)
}

// Purge erases an element's content in every version for good (the
// hashes stay in the audit log).
func (s *Service) Purge(ctx context.Context, id int64, by, why string) error {
	e, err := s.current(ctx, id)
	if err != nil {
		return err
	}
	if e.State == Purged {
		return fmt.Errorf("%w: %s is purged already", ErrState, e.Key)
	}
	if err := s.restate(ctx, *e, Purged, by, why, reason.MemoryPurged); err != nil {
		return err
	}
	// The key may hold a name (an entity's, a value's): it goes too.
	return s.o.Store.PurgeMemory(ctx, e.Scope, e.Key, fmt.Sprintf("purged:%s:%d", keyDigest(e.Key), e.ID))
}

// RollbackTarget says where to roll back to: a version, a time, or the
// moment before a session's first write.
type RollbackTarget struct {
	Version       int64
	Time          time.Time
	BeforeSession string
}

// Rollback returns every element (of scope, or all) to its state as of
// the target: a new version for each element changed since, restoring the
// content, state and attribution it had then (an element that did not
// exist then is deleted; a purged one stays purged). It returns the
// versions written.
func (s *Service) Rollback(ctx context.Context, scope string, t RollbackTarget, by, why string) (int, error) {
	asOf, err := s.resolve(ctx, t)
	if err != nil {
		return 0, err
	}
	q := store.MemoryQuery{Current: true}
	if scope != "" {
		q.Scopes = []string{scope}
	}
	now, err := s.o.Store.MemoryElements(ctx, q)
	if err != nil {
		return 0, err
	}
	q.AsOf = asOf
	then, err := s.o.Store.MemoryElements(ctx, q)
	if err != nil {
		return 0, err
	}
	past := map[string]store.MemoryElement{}
	for _, e := range then {
		past[e.Scope+"\x00"+e.Key] = e
	}
	operator := Caller{Agent: by}
	var es []store.MemoryElement
	for _, cur := range now {
		if cur.ID <= asOf || cur.State == Purged {
			continue
		}
		old, existed := past[cur.Scope+"\x00"+cur.Key]
		if existed && old.State != Deleted && (old.Body == nil || !s.check(ctx, operator, old)) {
			existed = false // purged, or altered on disk: nothing to restore
		}
		switch {
		case !existed:
			if cur.State == Deleted {
				continue
			}
			cur.State, cur.Body = Deleted, s.carry(ctx, operator, cur)
			es = append(es, cur)
		default:
			if old.State == cur.State && string(old.Body) == string(cur.Body) {
				continue
			}
			es = append(es, old)
		}
	}
	if len(es) == 0 {
		return 0, nil
	}
	for i := range es {
		es[i].By = by
	}
	ev := audit.New(audit.TypeMemory, audit.OutcomeInfo, reason.MemoryRolledBack, s.o.Now(), audit.Subject{})
	ev.Target = scope
	ev.Detail = fmt.Sprintf("rolled back to version %d by %s: %d elements: %s", asOf, by, len(es), why)
	return len(es), s.commit(ctx, es, ev)
}

func (s *Service) resolve(ctx context.Context, t RollbackTarget) (int64, error) {
	switch {
	case t.Version > 0:
		return t.Version, nil
	case t.BeforeSession != "":
		es, err := s.o.Store.MemoryElements(ctx, store.MemoryQuery{Session: t.BeforeSession, Limit: 1})
		if err != nil {
			return 0, err
		}
		if len(es) == 0 {
			return 0, fmt.Errorf("memory: session %s wrote nothing", t.BeforeSession)
		}
		return es[0].ID - 1, nil
	case !t.Time.IsZero():
		es, err := s.o.Store.MemoryElements(ctx, store.MemoryQuery{})
		if err != nil {
			return 0, err
		}
		var id int64
		for _, e := range es {
			if !e.Created.After(t.Time) {
				id = e.ID
			}
		}
		return id, nil
	}
	return 0, errors.New("memory: roll back to a version, a time or before a session")
}

// Sweep expires the elements past their time to live (an audited new
// version each); it returns how many.
func (s *Service) Sweep(ctx context.Context) (int, error) {
	es, err := s.o.Store.ExpiredMemory(ctx, s.o.Now(), maxItems)
	if err != nil || len(es) == 0 {
		return 0, err
	}
	for i := range es {
		es[i].Body = s.carry(ctx, Caller{Agent: "portcullis"}, es[i])
		es[i].State, es[i].By = Expired, "portcullis"
	}
	ev := audit.New(audit.TypeMemory, audit.OutcomeInfo, reason.MemoryExpired, s.o.Now(), audit.Subject{})
	ev.Detail = fmt.Sprintf("%d elements past their time to live", len(es))
	return len(es), s.commit(ctx, es, ev)
}

// Run sweeps expired elements every interval until ctx ends.
func (s *Service) Run(ctx context.Context, every time.Duration) error {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			// An error is retried at the next tick (a store that is down
			// does not end expiry for good).
			if _, err := s.Sweep(ctx); err != nil && ctx.Err() == nil && s.o.Alert != nil {
				ev := audit.New(audit.TypeMemory, audit.OutcomeError, reason.MemoryExpired, s.o.Now(), audit.Subject{})
				ev.Detail = "expiry sweep failed: " + err.Error()
				s.o.Record(ctx, ev)
			}
		}
	}
}
