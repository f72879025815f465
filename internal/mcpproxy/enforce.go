package mcpproxy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/portcullis-dev/portcullis/internal/approval"
	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/identity"
	"github.com/portcullis-dev/portcullis/internal/policy"
	"github.com/portcullis-dev/portcullis/internal/screen"
	"github.com/portcullis-dev/portcullis/internal/telemetry"
)

// JSON-RPC error codes the gateway returns, in the implementation-defined
// range and clear of the codes the MCP SDKs use (-32001..-32005, -32002,
// -32020..-32022, -32042).
const (
	CodeDenied      = -32030 // refused: authentication, policy, limits
	CodeUnavailable = -32031 // allowed, but the upstream could not serve it
)

// Reason codes in denial errors and audit events.
const (
	ReasonUnauthenticated  = "unauthenticated"
	ReasonUnknownTarget    = "unknown_target"
	ReasonBadArguments     = "invalid_arguments"
	ReasonArgumentsTooBig  = "arguments_too_large"
	ReasonSessionBusy      = "session_concurrency_limit"
	ReasonSessionHijack    = "session_agent_mismatch"
	ReasonTooManySessions  = "session_limit"
	ReasonAuditUnavailable = "audit_unavailable"
	ReasonMethodNotAllowed = "method_not_allowed"
	ReasonAmbiguousSession = "no_unique_agent_session"
	ReasonInternal         = "internal_error"
	ReasonOutsideTask      = "outside_task_scope"
	ReasonTaskBudget       = "task_budget_exhausted"
)

// denial is the error an agent sees: a reason code and the request ID, never
// policy internals.
func denial(code, requestID string) error {
	data, _ := json.Marshal(map[string]string{"reason": code, "request_id": requestID})
	return &jsonrpc.Error{Code: CodeDenied, Message: "denied by portcullis: " + code, Data: data}
}

func unavailable(code, requestID string) error {
	data, _ := json.Marshal(map[string]string{"reason": code, "request_id": requestID})
	return &jsonrpc.Error{Code: CodeUnavailable, Message: "portcullis: " + code, Data: data}
}

// call is the state of one agent request as it passes the pipeline.
type call struct {
	start     time.Time
	requestID string
	traceID   string
	rawArgs   json.RawMessage  // the arguments as received, for the replay record
	argMask   []screen.Finding // screened secrets and personal data in rawArgs, masked in the audit record
	principal *identity.Principal
	session   *mcp.ServerSession
	state     *sessionState
	event     *audit.Event
}

type routeKey struct{}

// enforce is the receiving middleware: every agent request passes here.
func (p *Proxy) enforce(next mcp.MethodHandler) mcp.MethodHandler {
	return func(ctx context.Context, method string, req mcp.Request) (res mcp.Result, err error) {
		// A bug must not crash the gateway or let a request through: a
		// panic anywhere below denies the request.
		defer func() {
			if r := recover(); r != nil {
				p.opts.Log.Error("panic while handling a request; denied", "method", method, "panic", r, "stack", string(debug.Stack()))
				e := audit.NewEvent(audit.TypeDecision, p.opts.Now())
				e.Method, e.Code, e.Detail = method, ReasonInternal, fmt.Sprint(r)
				p.recordBackground(e)
				res, err = nil, denial(ReasonInternal, "")
			}
		}()
		p.opts.Metrics.Request(method)
		c, err := p.begin(ctx, method, req)
		if err != nil {
			return nil, err
		}
		ctx, span := p.opts.Tracer.Start(ctx, "mcp "+method, telemetry.KindServer, c.traceID)
		span.Set("mcp.method", method)
		span.Set("portcullis.agent", c.principal.Agent)
		span.Set("portcullis.request_id", c.requestID)
		defer func() { span.Finish(err) }()
		switch method {
		case "tools/call":
			return p.enforceToolCall(ctx, c, next, method, req.(*mcp.CallToolRequest))
		case "resources/read":
			return p.enforceRead(ctx, c, next, method, req.(*mcp.ReadResourceRequest))
		case "resources/subscribe":
			r := req.(*mcp.SubscribeRequest)
			return p.decideThen(ctx, c, next, method, req, policy.ActionSubscribeResource, p.resourceTarget(r.Params.URI))
		case "prompts/get":
			return p.enforcePrompt(ctx, c, next, method, req.(*mcp.GetPromptRequest))
		case "completion/complete":
			return p.enforceComplete(ctx, c, next, method, req.(*mcp.CompleteRequest))
		case "tools/list", "prompts/list", "resources/list", "resources/templates/list":
			res, err := next(ctx, method, req)
			if err != nil {
				return nil, err
			}
			return p.filterList(ctx, c, method, res)
		case "initialize", "ping", "notifications/initialized", "notifications/cancelled",
			"notifications/progress", "notifications/roots/list_changed", "logging/setLevel",
			"resources/unsubscribe", "server/discover", "subscriptions/listen":
			// Session housekeeping: authenticated, no target to decide on.
			return next(ctx, method, req)
		default:
			// The HTTP and stdio fronts refuse unknown methods before the MCP
			// library sees them; this is the second line.
			c.event.Method, c.event.Code = method, ReasonMethodNotAllowed
			p.record(ctx, c)
			return nil, denial(ReasonMethodNotAllowed, c.requestID)
		}
	}
}

// begin authenticates the request and binds it to its session.
func (p *Proxy) begin(ctx context.Context, method string, req mcp.Request) (*call, error) {
	c := &call{start: p.opts.Now(), requestID: newRequestID(), traceID: traceOf(req)}
	c.event = audit.NewEvent(audit.TypeDecision, c.start)
	c.event.RequestID, c.event.TraceID, c.event.Method = c.requestID, c.traceID, method
	ss, _ := req.GetSession().(*mcp.ServerSession)
	c.session = ss
	if ss != nil {
		c.event.SessionID = ss.ID()
	}
	pr, err := p.opts.Principal(ctx, req)
	if err != nil || pr == nil {
		c.event.Type, c.event.Code = audit.TypeAuthn, ReasonUnauthenticated
		if err != nil {
			c.event.Detail = err.Error()
		}
		p.record(ctx, c)
		return nil, denial(ReasonUnauthenticated, c.requestID)
	}
	c.principal = pr
	c.event.Agent, c.event.User, c.event.Task, c.event.Credential = pr.Agent, pr.User, pr.Task, pr.CredentialID
	c.event.Actors = pr.Actors
	if ss == nil {
		return c, nil
	}
	st, err := p.session(ss, pr)
	if err != nil {
		code := ReasonSessionHijack
		if errors.Is(err, errTooManySessions) {
			code = ReasonTooManySessions
		}
		c.event.Code = code
		p.record(ctx, c)
		return nil, denial(code, c.requestID)
	}
	c.state = st
	return c, nil
}

// record writes c's event durably. It returns false if that failed, in which
// case the caller must deny.
func (p *Proxy) record(ctx context.Context, c *call) bool {
	c.event.LatencyMicros = p.opts.Now().Sub(c.start).Microseconds()
	_, span := p.opts.Tracer.Start(ctx, "audit.record", telemetry.KindInternal, c.traceID)
	err := p.opts.Recorder.Record(ctx, c.event)
	span.Finish(err)
	p.opts.Metrics.Decision(c.event.Action, c.event.Outcome, p.opts.Now().Sub(c.start))
	if err != nil {
		p.opts.Log.Error("audit write failed; denying", "request_id", c.requestID, "err", err)
		return false
	}
	return true
}

// decide evaluates in and records the decision. It returns nil when the
// request may proceed, or the denial to return.
func (p *Proxy) decide(ctx context.Context, c *call, in *policy.Input) error {
	in.Principal, in.RequestID, in.Method = c.principal, c.requestID, c.event.Method
	if c.session != nil {
		in.SessionID = c.session.ID()
	}
	if c.state != nil {
		in.Labels = c.state.labels.list()
	}
	_, span := p.opts.Tracer.Start(ctx, "policy.decide", telemetry.KindInternal, c.traceID)
	d := p.opts.Decider.Decide(in)
	span.Set("portcullis.decision", d.Code)
	span.Finish(nil)
	e := c.event
	e.Action, e.Target, e.Upstream, e.Labels = in.Action, in.Target.ID, in.Target.Upstream, in.Labels
	e.Input = &audit.Input{Roles: c.principal.Roles, Kind: in.Target.Kind,
		ReadOnly: in.Target.ReadOnly, Destruct: in.Target.Destructive, OpenWorld: in.Target.OpenWorld, Classes: in.Target.Classes}
	e.Input.Arguments, e.Input.Redactions = audit.RedactArguments(c.auditArgs())
	e.Input.UntrustedArguments = in.UntrustedArguments
	e.Input.Findings = in.Findings
	e.Policies, e.Reasons, e.Errors, e.PolicyVersion = d.Policies, d.Reasons, d.Errors, d.Version
	if !d.Allow && d.Code == policy.CodeApproval && p.opts.Approvals != nil && in.Action == policy.ActionCallTool {
		return p.holdForApproval(ctx, c, in, d)
	}
	if !d.Allow {
		e.Code = d.Code
		p.record(ctx, c)
		return denial(d.Code, c.requestID)
	}
	e.Outcome = audit.OutcomeAllow
	if !p.record(ctx, c) {
		return denial(ReasonAuditUnavailable, c.requestID)
	}
	return nil
}

// Reason codes of approval outcomes.
const (
	ReasonApprovalDenied  = "approval_denied"
	ReasonApprovalTimeout = "approval_timeout"
)

// holdForApproval records that the call awaits a human, holds it until a
// reviewer decides or the request expires, and records the outcome. It
// returns nil when the call may proceed.
func (p *Proxy) holdForApproval(ctx context.Context, c *call, in *policy.Input, d policy.Decision) error {
	e := c.event
	sessionID := ""
	if c.session != nil {
		sessionID = c.session.ID()
	}
	if prior, ok := p.opts.Approvals.SessionGrant(ctx, c.principal.Agent, c.principal.Task, sessionID, in.Target.ID); ok {
		e.Outcome, e.Policies = audit.OutcomeAllow, append(e.Policies, "approval:"+prior.ID)
		e.Detail = "approved for the " + prior.Scope + " by " + prior.DecidedBy
		if !p.record(ctx, c) {
			return denial(ReasonAuditUnavailable, c.requestID)
		}
		return nil
	}
	r := &approval.Request{
		Agent: c.principal.Agent, User: c.principal.User, Task: c.principal.Task, SessionID: sessionID,
		RequestID: c.requestID, Tool: in.Target.ID, Arguments: c.rawArgs, ArgsSHA256: e.ArgumentsSHA256, Reasons: d.Approval,
		Findings: append(slices.Clone(in.Findings), labelNotes(in.Labels, in.UntrustedArguments)...),
	}
	if err := p.opts.Approvals.NewRequest(r); err != nil {
		e.Code = ReasonInternal
		p.record(ctx, c)
		return denial(ReasonInternal, c.requestID)
	}
	e.Code, e.Reasons, e.Detail = policy.CodeApproval, append(e.Reasons, d.Approval...), "held for approval "+r.ID
	if !p.record(ctx, c) {
		return denial(ReasonAuditUnavailable, c.requestID)
	}
	final, err := p.opts.Approvals.Hold(ctx, r)
	// The outcome is a second decision event for the same request.
	out := *e
	out.Seq, out.Time, out.Outcome, out.Input = 0, p.opts.Now().UTC(), audit.OutcomeDeny, e.Input
	c.event = &out
	switch {
	case err != nil:
		out.Code, out.Detail = ReasonApprovalTimeout, "approval "+r.ID+": "+err.Error()
	case final.State == approval.Consumed:
		out.Outcome, out.Code = audit.OutcomeAllow, ""
		out.Policies = append(out.Policies, "approval:"+r.ID)
		out.Detail = "approved by " + final.DecidedBy + " (" + final.Scope + ")"
		if !p.record(ctx, c) {
			return denial(ReasonAuditUnavailable, c.requestID)
		}
		return nil
	case final.State == approval.Denied:
		out.Code, out.Detail = ReasonApprovalDenied, "denied by "+final.DecidedBy
	default:
		out.Code, out.Detail = ReasonApprovalTimeout, "approval "+r.ID+" "+final.State
	}
	p.record(ctx, c)
	return denial(out.Code, c.requestID)
}

// decideScreened screens the arguments, refuses the request if a rule
// blocks them, and otherwise decides it with the detections in the policy
// context (context.findings). What screening acted on is recorded after
// the decision, attributed like it.
func (p *Proxy) decideScreened(ctx context.Context, c *call, in *policy.Input, upstream string, raw []byte) error {
	v := p.screenArguments(c, upstream, raw)
	if v.Block {
		c.event.Detail = "screening: " + v.Summary()
		err := p.refuse(ctx, c, in.Action, in.Target.ID, ReasonScreeningBlocked)
		p.recordScreening(ctx, c, screen.DirArguments, &v)
		return err
	}
	in.Findings = v.Keys()
	err := p.decide(ctx, c, in)
	p.recordScreening(ctx, c, screen.DirArguments, &v)
	return err
}

// labelNotes tells a reviewer what the session had read and which
// arguments came from there.
func labelNotes(labels, untrustedArgs []string) []string {
	var out []string
	if len(labels) > 0 {
		out = append(out, "session labels: "+strings.Join(labels, ", "))
	}
	if len(untrustedArgs) > 0 {
		out = append(out, "arguments first seen in untrusted output: "+strings.Join(untrustedArgs, ", "))
	}
	return out
}

// refuse records a denial that happened before policy (unknown target, bad
// arguments, limits).
func (p *Proxy) refuse(ctx context.Context, c *call, action, target, code string) error {
	c.event.Action, c.event.Target, c.event.Code = action, target, code
	c.event.PolicyVersion = p.opts.Decider.Version()
	p.record(ctx, c)
	return denial(code, c.requestID)
}

func (p *Proxy) enforceToolCall(ctx context.Context, c *call, next mcp.MethodHandler, method string, req *mcp.CallToolRequest) (mcp.Result, error) {
	name := req.Params.Name
	e, ok := p.catalog.tool(name)
	if !ok {
		return nil, p.refuse(ctx, c, policy.ActionCallTool, truncate(name, 200), ReasonUnknownTarget)
	}
	raw := req.Params.Arguments
	if len(raw) > p.opts.Limits.MaxArgumentBytes {
		return nil, p.refuse(ctx, c, policy.ActionCallTool, name, ReasonArgumentsTooBig)
	}
	args, err := policy.Arguments(raw)
	if err != nil {
		return nil, p.refuse(ctx, c, policy.ActionCallTool, name, ReasonBadArguments)
	}
	if err := e.args.check(raw); err != nil {
		c.event.Detail = err.Error()
		return nil, p.refuse(ctx, c, policy.ActionCallTool, name, ReasonBadArguments)
	}
	sum := sha256.Sum256(raw)
	c.event.ArgumentsSHA256 = hex.EncodeToString(sum[:])
	c.rawArgs = raw
	left := int64(-1)
	if c.principal.Task != "" {
		if !slices.Contains(c.principal.TaskTools, e.qualified) {
			return nil, p.refuse(ctx, c, policy.ActionCallTool, name, ReasonOutsideTask)
		}
		var ok bool
		if left, ok = p.taskCall(c.principal); !ok {
			return nil, p.refuse(ctx, c, policy.ActionCallTool, name, ReasonTaskBudget)
		}
	}
	if p.opts.Budget != nil {
		if reason, tripped := p.opts.Budget.Admit(c.principal.Agent, e.qualified, c.event.ArgumentsSHA256); reason != "" {
			if tripped {
				c.event.Detail = "breaker opened: the same call repeated too often"
			}
			return nil, p.refuse(ctx, c, policy.ActionCallTool, name, reason)
		}
	}
	return p.withSlot(ctx, c, policy.ActionCallTool, name, func() (mcp.Result, error) {
		in := &policy.Input{Action: policy.ActionCallTool, Target: p.toolTarget(e), Arguments: args, BudgetLeft: left}
		if c.state != nil {
			in.UntrustedArguments = c.state.origins.untrustedArguments(raw)
		}
		if err := p.decideScreened(ctx, c, in, e.up.Name, raw); err != nil {
			return nil, err
		}
		return p.dispatchScreened(ctx, c, next, method, req, e.up, p.toolLabels(e))
	})
}

func (p *Proxy) toolTarget(e *toolEntry) policy.Target {
	t := policy.Target{Kind: policy.KindTool, ID: e.qualified, Upstream: e.up.Name, Classes: p.opts.ToolClasses[e.qualified]}
	if a := e.tool.Annotations; a != nil {
		t.ReadOnly = a.ReadOnlyHint
		t.Destructive = a.DestructiveHint == nil || *a.DestructiveHint
		t.OpenWorld = a.OpenWorldHint == nil || *a.OpenWorldHint
	} else {
		// MCP defaults when a server says nothing: may destroy, open world.
		t.Destructive, t.OpenWorld = true, true
	}
	return t
}

func (p *Proxy) resourceTarget(uri string) policy.Target {
	t := policy.Target{Kind: policy.KindResource, ID: uri}
	if u, ok := p.catalog.resourceUpstream(uri); ok {
		t.Upstream = u.Name
	}
	return t
}

func (p *Proxy) enforceRead(ctx context.Context, c *call, next mcp.MethodHandler, method string, req *mcp.ReadResourceRequest) (mcp.Result, error) {
	uri := req.Params.URI
	u, ok := p.catalog.resourceUpstream(uri)
	if !ok || len(uri) > MaxURIBytes {
		return nil, p.refuse(ctx, c, policy.ActionReadResource, truncate(uri, 200), ReasonUnknownTarget)
	}
	return p.withSlot(ctx, c, policy.ActionReadResource, uri, func() (mcp.Result, error) {
		in := &policy.Input{Action: policy.ActionReadResource, Target: policy.Target{Kind: policy.KindResource, ID: uri, Upstream: u.Name}}
		if err := p.decide(ctx, c, in); err != nil {
			return nil, err
		}
		return p.dispatchScreened(ctx, c, next, method, req, u, p.upstreamLabels(u))
	})
}

func (p *Proxy) enforcePrompt(ctx context.Context, c *call, next mcp.MethodHandler, method string, req *mcp.GetPromptRequest) (mcp.Result, error) {
	name := req.Params.Name
	e, ok := p.catalog.prompt(name)
	if !ok {
		return nil, p.refuse(ctx, c, policy.ActionGetPrompt, truncate(name, 200), ReasonUnknownTarget)
	}
	raw, err := json.Marshal(req.Params.Arguments)
	if err != nil || len(raw) > p.opts.Limits.MaxArgumentBytes {
		return nil, p.refuse(ctx, c, policy.ActionGetPrompt, name, ReasonArgumentsTooBig)
	}
	args, err := policy.Arguments(raw)
	if err != nil {
		return nil, p.refuse(ctx, c, policy.ActionGetPrompt, name, ReasonBadArguments)
	}
	c.rawArgs = raw
	return p.withSlot(ctx, c, policy.ActionGetPrompt, name, func() (mcp.Result, error) {
		in := &policy.Input{Action: policy.ActionGetPrompt, Target: policy.Target{Kind: policy.KindPrompt, ID: e.qualified, Upstream: e.up.Name}, Arguments: args}
		if err := p.decideScreened(ctx, c, in, e.up.Name, raw); err != nil {
			return nil, err
		}
		return p.dispatchScreened(ctx, c, next, method, req, e.up, p.upstreamLabels(e.up))
	})
}

// enforceComplete decides a completion as access to the prompt or resource
// template it completes.
func (p *Proxy) enforceComplete(ctx context.Context, c *call, next mcp.MethodHandler, method string, req *mcp.CompleteRequest) (mcp.Result, error) {
	ref := req.Params.Ref
	if ref == nil {
		return nil, p.refuse(ctx, c, "", "", ReasonBadArguments)
	}
	var in *policy.Input
	switch ref.Type {
	case "ref/prompt":
		e, ok := p.catalog.prompt(ref.Name)
		if !ok {
			return nil, p.refuse(ctx, c, policy.ActionGetPrompt, truncate(ref.Name, 200), ReasonUnknownTarget)
		}
		in = &policy.Input{Action: policy.ActionGetPrompt, Target: policy.Target{Kind: policy.KindPrompt, ID: e.qualified, Upstream: e.up.Name}}
	case "ref/resource":
		u, ok := p.catalog.resourceUpstream(ref.URI)
		if !ok {
			return nil, p.refuse(ctx, c, policy.ActionReadResource, truncate(ref.URI, 200), ReasonUnknownTarget)
		}
		in = &policy.Input{Action: policy.ActionReadResource, Target: policy.Target{Kind: policy.KindResource, ID: ref.URI, Upstream: u.Name}}
	default:
		return nil, p.refuse(ctx, c, "", "", ReasonBadArguments)
	}
	return p.decideThen(ctx, c, next, method, req, in.Action, in.Target)
}

// decideThen decides and, if allowed, lets the MCP library handle the request.
func (p *Proxy) decideThen(ctx context.Context, c *call, next mcp.MethodHandler, method string, req mcp.Request, action string, t policy.Target) (mcp.Result, error) {
	if t.Upstream == "" {
		return nil, p.refuse(ctx, c, action, truncate(t.ID, 200), ReasonUnknownTarget)
	}
	if err := p.decide(ctx, c, &policy.Input{Action: action, Target: t}); err != nil {
		return nil, err
	}
	return next(ctx, method, req)
}

// withSlot bounds concurrent calls per session.
func (p *Proxy) withSlot(ctx context.Context, c *call, action, target string, f func() (mcp.Result, error)) (mcp.Result, error) {
	if c.state != nil {
		if n := c.state.calls.Add(1); int(n) > p.opts.Limits.MaxCallsPerSession {
			c.state.calls.Add(-1)
			return nil, p.refuse(ctx, c, action, target, ReasonSessionBusy)
		}
		defer c.state.calls.Add(-1)
	}
	return f()
}

// dispatch hands an allowed request to the MCP library, which routes it to
// the handler registered for the target; the context carries the upstream
// the decision was made for, so decision and dispatch cannot disagree.
func (p *Proxy) dispatch(ctx context.Context, c *call, next mcp.MethodHandler, method string, req mcp.Request, u *Upstream) (mcp.Result, error) {
	ctx = context.WithValue(ctx, routeKey{}, &route{up: u, call: c})
	return next(ctx, method, req)
}

// dispatchScreened dispatches and then, before the agent reads the result,
// gives the session the labels of what it read (an error result counts:
// its text comes from the same place), notes the provenance of the values
// in it, redacts personal data and spotlights it, by the upstream's
// configuration.
func (p *Proxy) dispatchScreened(ctx context.Context, c *call, next mcp.MethodHandler, method string, req mcp.Request, u *Upstream, labels []string) (mcp.Result, error) {
	res, err := p.dispatch(ctx, c, next, method, req, u)
	if err != nil {
		return res, p.screenError(ctx, c, u, err)
	}
	if c.state != nil {
		p.label(ctx, c, labels)
		c.state.origins.observe(resultTexts(res), slices.Contains(labels, LabelUntrustedInput))
	}
	p.screenResult(ctx, c, u, res)
	if mode := p.opts.Spotlight[u.Name]; mode != "" {
		tok := &sessionToken{} // without a session, a token for this result alone
		if c.state != nil {
			tok = &c.state.token
		}
		spotlight(res, mode, tok.get())
	}
	return res, nil
}

type route struct {
	up   *Upstream
	call *call
}

// routeOf returns the route the enforcement middleware attached. Handlers
// refuse requests that did not pass it (fail closed).
func routeOf(ctx context.Context) (*route, error) {
	r, ok := ctx.Value(routeKey{}).(*route)
	if !ok {
		return nil, errors.New("request did not pass enforcement")
	}
	return r, nil
}

// filterList removes from a list result what the agent could never use, and
// records how much it saw.
func (p *Proxy) filterList(ctx context.Context, c *call, method string, res mcp.Result) (mcp.Result, error) {
	visible := func(action string, t policy.Target) bool {
		return p.opts.Decider.Visible(ctx, &policy.Input{Principal: c.principal, Action: action, Target: t, Method: method, RequestID: c.requestID})
	}
	total, shown := 0, 0
	switch r := res.(type) {
	case *mcp.ListToolsResult:
		total = len(r.Tools)
		out := r.Tools[:0:0]
		for _, t := range r.Tools {
			e, ok := p.catalog.tool(t.Name)
			if ok && c.principal.Task != "" && !slices.Contains(c.principal.TaskTools, e.qualified) {
				continue // least agency: a task sees only its tools
			}
			if ok && visible(policy.ActionCallTool, p.toolTarget(e)) {
				out = append(out, t)
			}
		}
		r.Tools, shown = out, len(out)
	case *mcp.ListPromptsResult:
		total = len(r.Prompts)
		out := r.Prompts[:0:0]
		for _, pr := range r.Prompts {
			if e, ok := p.catalog.prompt(pr.Name); ok && visible(policy.ActionGetPrompt, policy.Target{Kind: policy.KindPrompt, ID: e.qualified, Upstream: e.up.Name}) {
				out = append(out, pr)
			}
		}
		r.Prompts, shown = out, len(out)
	case *mcp.ListResourcesResult:
		total = len(r.Resources)
		out := r.Resources[:0:0]
		for _, rs := range r.Resources {
			if t := p.resourceTarget(rs.URI); t.Upstream != "" && visible(policy.ActionReadResource, t) {
				out = append(out, rs)
			}
		}
		r.Resources, shown = out, len(out)
	case *mcp.ListResourceTemplatesResult:
		total = len(r.ResourceTemplates)
		out := r.ResourceTemplates[:0:0]
		for _, t := range r.ResourceTemplates {
			if up, ok := p.templateUpstream(t.URITemplate); ok && visible(policy.ActionReadResource, policy.Target{Kind: policy.KindResource, ID: t.URITemplate, Upstream: up}) {
				out = append(out, t)
			}
		}
		r.ResourceTemplates, shown = out, len(out)
	default:
		return nil, p.refuse(ctx, c, "list", method, ReasonMethodNotAllowed)
	}
	c.event.Action, c.event.Outcome = "list", audit.OutcomeAllow
	c.event.PolicyVersion = p.opts.Decider.Version()
	c.event.Detail = fmt.Sprintf("%d of %d visible", shown, total)
	if !p.record(ctx, c) {
		return nil, denial(ReasonAuditUnavailable, c.requestID)
	}
	return res, nil
}

func (p *Proxy) templateUpstream(tpl string) (string, bool) {
	p.catalog.mu.RLock()
	defer p.catalog.mu.RUnlock()
	for _, t := range p.catalog.templates {
		if t.template.URITemplate == tpl {
			return t.up.Name, true
		}
	}
	return "", false
}
