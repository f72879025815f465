package gateway

import (
	"context"

	"github.com/portcullis-dev/portcullis/internal/grant"
	"github.com/portcullis-dev/portcullis/internal/mcpproxy"
	"github.com/portcullis-dev/portcullis/internal/policy"
	"github.com/portcullis-dev/portcullis/internal/reason"
)

// decider is Cedar plus just-in-time grants: a grant turns "no permit" into
// an allow for its agent and tool, and never overrides a forbid or an error.
type decider struct {
	*policy.Engine
	grants *grant.Cache
}

var _ mcpproxy.Decider = decider{}

func (d decider) Decide(in *policy.Input) policy.Decision {
	dec := d.Engine.Decide(in)
	if dec.Allow || dec.Code != reason.NoPermit {
		return dec // a grant only stands in for a missing permit
	}
	if g, ok := d.grantFor(in); ok {
		dec.Allow, dec.Code = true, ""
		dec.Policies = append(dec.Policies, "grant:"+g.ID)
		dec.Reasons = append(dec.Reasons, "just-in-time grant by "+g.GrantedBy+": "+g.Reason)
	}
	return dec
}

func (d decider) Visible(ctx context.Context, in *policy.Input) bool {
	if d.Engine.Visible(ctx, in) {
		return true
	}
	_, ok := d.grantFor(in)
	return ok
}

func (d decider) grantFor(in *policy.Input) (grant.Grant, bool) {
	if in.Principal == nil || in.Target.Kind != policy.KindTool || in.Action != policy.ActionCallTool {
		return grant.Grant{}, false
	}
	return d.grants.Lookup(in.Principal.Agent, in.Target.ID)
}
