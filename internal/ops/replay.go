package ops

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/identity"
	"github.com/portcullis-dev/portcullis/internal/policy"
	"github.com/portcullis-dev/portcullis/internal/store"
)

// SaveBundle keeps the policy sources in force under their version.
func SaveBundle(ctx context.Context, st *store.DB, set *policy.Set, srcs []policy.Source) error {
	b, err := json.Marshal(srcs)
	if err != nil {
		return err
	}
	return st.SaveBundle(ctx, set.Version(), b)
}

// Replay is the outcome of re-evaluating a recorded decision.
type Replay struct {
	Event    *audit.Event
	Recorded policy.Decision // under the policy version the event names
	Current  policy.Decision // under the configuration's policy now
}

// ReplayDecision re-evaluates decision event seq under the policy bundle it
// was made with and under the current configuration's policy. Arguments
// that were redacted when recorded are replayed as their hashes.
func (o *Ops) ReplayDecision(ctx context.Context, seq int64) (*Replay, error) {
	st := o.st
	rows, err := st.Events(ctx, store.EventQuery{AfterSeq: seq - 1, Limit: 1})
	if err != nil {
		return nil, err
	}
	if len(rows) == 0 || rows[0].Seq != seq {
		return nil, fmt.Errorf("replay: no event %d", seq)
	}
	e, err := audit.Decode(rows[0])
	if err != nil {
		return nil, err
	}
	if e.Input == nil {
		return nil, fmt.Errorf("replay: event %d (%s) is not a replayable policy decision", seq, e.Type)
	}
	args, err := policy.Arguments(e.Input.Arguments)
	if err != nil {
		return nil, fmt.Errorf("replay: %w", err)
	}
	in := &policy.Input{
		Principal: &identity.Principal{Agent: e.Agent, Roles: e.Input.Roles, User: e.User, Task: e.Task},
		Action:    e.Action,
		Target: policy.Target{Kind: e.Input.Kind, ID: e.Target, Upstream: e.Upstream,
			ReadOnly: e.Input.ReadOnly, Destructive: e.Input.Destruct, OpenWorld: e.Input.OpenWorld, Classes: e.Input.Classes},
		Now:       e.Time,
		RequestID: e.RequestID, SessionID: e.SessionID, Method: e.Method, Arguments: args, Labels: e.Labels,
		UntrustedArguments: e.Input.UntrustedArguments,
		Provenance:         e.Input.Provenance,
		Findings:           e.Input.Findings,
	}
	b, err := st.Bundle(ctx, e.PolicyVersion)
	if err != nil {
		return nil, err
	}
	var recordedSrcs []policy.Source
	if err := json.Unmarshal(b, &recordedSrcs); err != nil {
		return nil, fmt.Errorf("replay: policy bundle: %w", err)
	}
	recorded, err := policy.Compile(recordedSrcs)
	if err != nil {
		return nil, fmt.Errorf("replay: recorded policy: %w", err)
	}
	srcs, err := LoadPolicies(o.cfg)
	if err != nil {
		return nil, err
	}
	current, err := policy.Compile(srcs)
	if err != nil {
		return nil, fmt.Errorf("replay: current policy: %w", err)
	}
	return &Replay{
		Event:    e,
		Recorded: policy.NewEngine(recorded).Decide(in),
		Current:  policy.NewEngine(current).Decide(in),
	}, nil
}
