package ops

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strings"
	"time"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/reason"
	"github.com/portcullis-dev/portcullis/internal/store"
)

// CreateJoinToken makes a one-time join token for an agent
// (`portcullis agent join-token`), valid for identity.join_token_ttl.
func (o *Ops) CreateJoinToken(ctx context.Context, agent, by string) (string, time.Time, error) {
	if err := attributed(by); err != nil {
		return "", time.Time{}, err
	}
	if _, ok := o.cfg.Agent(agent); !ok {
		return "", time.Time{}, fmt.Errorf("join token: %w: %q", config.ErrUnknownAgent, agent)
	}
	var b [24]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", time.Time{}, err
	}
	tok := "pcj-" + base64.RawURLEncoding.EncodeToString(b[:])
	exp := time.Now().Add(o.cfg.Identity.JoinTokenTTL.D())
	e := audit.New(audit.TypeIdentity, audit.OutcomeInfo, reason.JoinTokenCreated, time.Now(), audit.Subject{Agent: agent})
	e.Detail = "by " + by + ", expires " + exp.UTC().Format(time.RFC3339)
	if err := audit.WriteNow(ctx, o.st, e); err != nil {
		return "", time.Time{}, err
	}
	return tok, exp, o.st.AddJoinToken(ctx, tok, agent, exp)
}

// ListInstances returns enrolled agent instances.
func (o *Ops) ListInstances(ctx context.Context) ([]store.Instance, error) {
	return o.st.Instances(ctx)
}

// RetireInstance ends an agent instance for good: its SPIFFE ID is revoked
// and the instance recorded as retired.
func (o *Ops) RetireInstance(ctx context.Context, spiffeID, by string) error {
	if err := attributed(by); err != nil {
		return err
	}
	if err := o.Revoke(ctx, store.RevokeToken, spiffeID, by, "instance retired"); err != nil {
		return err
	}
	ins, err := o.st.Instances(ctx)
	if err != nil {
		return err
	}
	for _, in := range ins {
		if in.SPIFFEID == spiffeID {
			in.State = "retired"
			return o.st.PutInstance(ctx, in)
		}
	}
	return fmt.Errorf("no instance %s", spiffeID)
}

// TaskRecord is a started task as the audit log recorded it.
type TaskRecord struct {
	ID, Agent, User, TokenID, Detail string
	Started                          time.Time
	Revoked                          bool
}

// ListTasks returns the tasks started (newest last; the last 10,000
// token events of the audit log are read), with whether they were revoked.
func (o *Ops) ListTasks(ctx context.Context) ([]TaskRecord, error) {
	return o.RecentTasks(ctx, 0)
}

// RecentTasks is ListTasks over the last window events of the log (0: the
// whole log): a page need not scan millions of events for a few tasks.
func (o *Ops) RecentTasks(ctx context.Context, window int64) ([]TaskRecord, error) {
	st := o.st
	var after int64
	if window > 0 {
		state, err := st.State(ctx)
		if err != nil {
			return nil, err
		}
		after = max(0, state.Size-window)
	}
	// The newest task_started events (the log may hold millions of others).
	rows, err := st.Events(ctx, store.EventQuery{AfterSeq: after, Types: []string{string(audit.TypeToken)}, Limit: store.MaxQueryLimit, Last: true})
	if err != nil {
		return nil, err
	}
	revs, err := st.Revocations(ctx)
	if err != nil {
		return nil, err
	}
	var out []TaskRecord
	for _, r := range rows {
		if r.Type != string(audit.TypeToken) {
			continue
		}
		e, err := audit.Decode(r)
		if err != nil || e.Code != reason.TaskStarted {
			continue
		}
		out = append(out, TaskRecord{ID: e.Task, Agent: e.Agent, User: e.User, TokenID: e.Credential, Detail: e.Detail, Started: e.Time,
			Revoked: revs[store.RevokeTask][e.Task] || revs[store.RevokeToken][e.Credential] || revs[store.RevokeAgent][e.Agent]})
	}
	return out, nil
}

// TaskTools returns the tools a started task may use, as its task_started
// event recorded them.
func (o *Ops) TaskTools(ctx context.Context, id string) ([]string, error) {
	ts, err := o.ListTasks(ctx)
	if err != nil {
		return nil, err
	}
	for _, t := range ts {
		if t.ID != id {
			continue
		}
		_, rest, ok := strings.Cut(t.Detail, "tools [")
		list, _, ok2 := strings.Cut(rest, "]")
		if !ok || !ok2 {
			return nil, fmt.Errorf("task %s: its tools are not in its record", id)
		}
		return strings.Fields(list), nil
	}
	return nil, fmt.Errorf("no task %q started", id)
}
