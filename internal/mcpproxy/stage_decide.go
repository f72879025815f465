package mcpproxy

import (
	"context"
	"slices"
	"strings"

	"github.com/portcullis-dev/portcullis/internal/approval"
	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/policy"
	"github.com/portcullis-dev/portcullis/internal/provenance"
	"github.com/portcullis-dev/portcullis/internal/reason"
	"github.com/portcullis-dev/portcullis/internal/telemetry"
)

// decide asks policy, with everything the earlier stages learnt: the
// target, the arguments, the session's labels, which arguments came from
// untrusted output, what screening found, the task's budget. A decision
// that needs a human holds the call until a reviewer decides.
func decide(p *Proxy, ctx context.Context, c *call) error {
	if c.method == "tools/call" {
		if err := p.contain(c, &c.target); err != nil {
			return err
		}
	}
	in := &policy.Input{
		Principal: c.principal, Action: c.event.Action, Target: c.target, Arguments: c.cedarArgs,
		RequestID: c.requestID, SessionID: c.s.id, Method: c.method, BudgetLeft: c.budgetLeft,
		Labels: c.s.labels.list(), Findings: c.findings,
	}
	if c.rawArgs != nil && p.opts.Decider.ReadsProvenance() {
		// Only when a policy reads it: judging costs every call.
		ap := judgeArguments(&c.s.prov, c.dataflow(), c.rawArgs)
		in.UntrustedArguments, in.Provenance = ap.untrusted, ap.roles
	}
	c.input = in
	_, span := p.opts.Tracer.Start(ctx, "policy.decide", telemetry.KindInternal, c.traceID)
	d := p.opts.Decider.Decide(in)
	setDecision(span, d)
	span.Finish(nil)
	e := c.event
	e.Labels = in.Labels
	e.Input = &audit.Input{Roles: c.principal.Roles, Kind: in.Target.Kind,
		ReadOnly: in.Target.ReadOnly, Destruct: in.Target.Destructive, OpenWorld: in.Target.OpenWorld, Classes: in.Target.Classes}
	e.Input.Arguments, e.Input.Redactions = audit.RedactArguments(c.auditArgs())
	e.Input.UntrustedArguments, e.Input.Provenance = in.UntrustedArguments, in.Provenance
	e.Input.Findings = in.Findings
	e.Policies, e.Reasons, e.Errors, e.PolicyVersion = d.Policies, d.Reasons, d.Errors, d.Version
	if d.Allow && in.Action == policy.ActionCallTool && p.approvalContained(c) {
		if p.opts.Approvals == nil {
			return deny(reason.Contained).withDetail("the session is contained: non-read calls need a reviewer's approval, and no approval workflow is configured")
		}
		d.Allow, d.Code = false, reason.ApprovalRequired
		d.Approval = append(d.Approval, "the session is contained by the response to an alert: every non-read call needs a reviewer's approval")
	}
	if !d.Allow && d.Code == reason.ApprovalRequired && p.opts.Approvals != nil && in.Action == policy.ActionCallTool {
		return p.holdForApproval(ctx, c, in, d)
	}
	if !d.Allow {
		return deny(d.Code)
	}
	return nil
}

// commit records the decision to allow before anything happens: the call
// is relayed only once its event is in the log (on disk, too, with
// audit.sync before_relay; else the reply stage waits for the disk, but
// with background).
func commit(p *Proxy, ctx context.Context, c *call) error {
	if c.committed {
		return nil // held for approval: the approval's outcome is recorded
	}
	c.event.Outcome = audit.OutcomeAllow
	if c.event.PolicyVersion == "" {
		c.event.PolicyVersion = p.opts.Decider.Version()
	}
	_, span := p.opts.Tracer.Start(ctx, "audit.record", telemetry.KindInternal, c.traceID)
	ok := p.record(ctx, c, true)
	span.Finish(nil)
	if !ok {
		r := deny(reason.AuditUnavailable)
		r.recorded = true // the log refused it: nothing more to write
		return r
	}
	return nil
}

// holdForApproval records that the call awaits a human, holds it until a
// reviewer decides or the request expires, and records the outcome. It
// returns nil when the call may proceed.
func (p *Proxy) holdForApproval(ctx context.Context, c *call, in *policy.Input, d policy.Decision) error {
	e := c.event
	// An earlier grant covers the call, unless the session is held to
	// approval by the response to an alert: then every call is reviewed.
	if prior, ok := p.opts.Approvals.SessionGrant(ctx, c.principal.Agent, c.principal.Task, c.s.id, in.Target.ID); ok && !p.approvalContained(c) {
		e.Outcome, e.Policies = audit.OutcomeAllow, append(e.Policies, "approval:"+prior.ID)
		e.Detail = "approved for the " + prior.Scope + " by " + prior.DecidedBy
		if !p.record(ctx, c, true) {
			return recordedDenial(reason.AuditUnavailable)
		}
		return nil
	}
	r := &approval.Request{
		Agent: c.principal.Agent, User: c.principal.User, Task: c.principal.Task, SessionID: c.s.id,
		RequestID: c.requestID, Tool: in.Target.ID, Arguments: c.rawArgs, ArgsSHA256: e.ArgumentsSHA256, Reasons: d.Approval,
		Findings: append(slices.Clone(in.Findings), labelNotes(in.Labels, in.UntrustedArguments, in.Provenance)...),
	}
	if err := p.opts.Approvals.NewRequest(r); err != nil {
		return deny(reason.Internal).withDetail("approval request: " + err.Error())
	}
	e.Code, e.Reasons, e.Detail = reason.ApprovalRequired, append(e.Reasons, d.Approval...), "held for approval "+r.ID
	if !p.record(ctx, c, false) {
		return recordedDenial(reason.AuditUnavailable)
	}
	final, err := p.opts.Approvals.Hold(ctx, r)
	// The outcome is a second decision event for the same request.
	out := *e
	out.Seq, out.Time, out.Outcome, out.Input = 0, p.opts.Now().UTC(), audit.OutcomeDeny, e.Input
	c.event, c.committed = &out, false
	c.approved = err == nil && final.State == approval.Consumed
	switch {
	case err != nil:
		out.Code, out.Detail = reason.ApprovalTimeout, "approval "+r.ID+": "+err.Error()
	case final.State == approval.Consumed && p.contain(c, &c.target) != nil:
		// Contained while it waited: an approval does not lift it.
		out.Code, out.Detail = reason.Contained, "approved by "+final.DecidedBy+", but the session was contained meanwhile"
	case final.State == approval.Consumed:
		out.Outcome, out.Code = audit.OutcomeAllow, ""
		out.Policies = append(out.Policies, "approval:"+r.ID)
		out.Detail = "approved by " + final.DecidedBy + " (" + final.Scope + ")"
		if !p.record(ctx, c, true) {
			return recordedDenial(reason.AuditUnavailable)
		}
		return nil
	case final.State == approval.Denied:
		out.Code, out.Detail = reason.ApprovalDenied, "denied by "+final.DecidedBy
	default:
		out.Code, out.Detail = reason.ApprovalTimeout, "approval "+r.ID+" "+final.State
	}
	return deny(out.Code).withDetail(out.Detail)
}

func recordedDenial(code reason.Code) *refusal {
	r := deny(code)
	r.recorded = true
	return r
}

// labelNotes tells a reviewer what the session had read and which
// arguments came from there.
func labelNotes(labels, untrustedArgs []string, roles map[string]string) []string {
	var out []string
	if len(labels) > 0 {
		out = append(out, "session labels: "+strings.Join(labels, ", "))
	}
	if len(untrustedArgs) > 0 {
		out = append(out, "arguments first seen in untrusted output: "+strings.Join(untrustedArgs, ", "))
	}
	var rs []string
	for _, r := range provenance.Roles {
		if o, ok := roles[r]; ok && o != "trusted" {
			rs = append(rs, r+" "+o)
		}
	}
	if len(rs) > 0 {
		out = append(out, "argument provenance: "+strings.Join(rs, ", "))
	}
	return out
}
