//lint:file-ignore SA1019 sampling, elicitation, roots and logging are deprecated as of MCP 2026-07-28, but older peers still use them and the gateway must keep deciding on them.

package mcpproxy

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/policy"
	"github.com/portcullis-dev/portcullis/internal/telemetry"
)

// toolHandler relays an allowed tools/call to the upstream that serves e.
func (p *Proxy) toolHandler(e *toolEntry) mcp.ToolHandler {
	return func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		r, err := routeOf(ctx)
		if err != nil {
			return nil, denial(ReasonMethodNotAllowed, "")
		}
		params := &mcp.CallToolParams{Name: e.original, Arguments: req.Params.Arguments}
		var res *mcp.CallToolResult
		err = p.relay(ctx, r, req.Params.Meta, func(ctx context.Context, s *mcp.ClientSession, meta mcp.Meta) error {
			params.Meta = meta
			var err error
			res, err = s.CallTool(ctx, params)
			return err
		})
		if err != nil {
			return nil, err
		}
		if n := contentSize(res.Content); n > p.opts.Limits.MaxResultBytes {
			return nil, unavailable("result_too_large", r.call.requestID)
		}
		return res, nil
	}
}

func (p *Proxy) promptHandler(e *promptEntry) mcp.PromptHandler {
	return func(ctx context.Context, req *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
		r, err := routeOf(ctx)
		if err != nil {
			return nil, denial(ReasonMethodNotAllowed, "")
		}
		var res *mcp.GetPromptResult
		err = p.relay(ctx, r, req.Params.Meta, func(ctx context.Context, s *mcp.ClientSession, meta mcp.Meta) error {
			var err error
			res, err = s.GetPrompt(ctx, &mcp.GetPromptParams{Meta: meta, Name: e.original, Arguments: req.Params.Arguments})
			return err
		})
		return res, err
	}
}

// resourceHandler relays resources/read. The upstream is the one the
// decision was made for (from the route), whichever template the library
// matched.
func (p *Proxy) resourceHandler(_ *Upstream) mcp.ResourceHandler {
	return func(ctx context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
		r, err := routeOf(ctx)
		if err != nil {
			return nil, denial(ReasonMethodNotAllowed, "")
		}
		var res *mcp.ReadResourceResult
		err = p.relay(ctx, r, req.Params.Meta, func(ctx context.Context, s *mcp.ClientSession, meta mcp.Meta) error {
			var err error
			res, err = s.ReadResource(ctx, &mcp.ReadResourceParams{Meta: meta, URI: req.Params.URI})
			return err
		})
		return res, err
	}
}

// relay runs f against r's upstream within its concurrency and time limits,
// rewriting the progress token so progress finds its way back to the agent.
func (p *Proxy) relay(ctx context.Context, r *route, meta mcp.Meta, f func(context.Context, *mcp.ClientSession, mcp.Meta) error) (err error) {
	u := r.up
	s, err := u.Session()
	if err != nil {
		return unavailable("upstream_unavailable", r.call.requestID)
	}
	ref, err := u.acquire(r.call.session)
	if err != nil {
		return unavailable("upstream_busy", r.call.requestID)
	}
	defer u.release(ref)
	ctx, span := p.opts.Tracer.Start(ctx, "upstream "+u.Name, telemetry.KindClient, r.call.traceID)
	defer func() { span.Finish(err) }()
	out := mcp.Meta{}
	for k, v := range meta {
		out[k] = v
	}
	out[traceparentKey] = childTraceparent(r.call.traceID, span.ID())
	if tok, ok := meta["progressToken"]; ok && r.call.session != nil {
		up := fmt.Sprintf("pc-%d", p.progressSeq.Add(1))
		p.progress.Store(up, progressRoute{session: r.call.session, token: tok, ctx: ctx})
		defer p.progress.Delete(up)
		out["progressToken"] = up
	}
	ctx, cancel := context.WithTimeout(ctx, u.Timeout)
	defer cancel()
	start := time.Now()
	err = f(ctx, s, out)
	p.opts.Metrics.UpstreamCall(u.Name, resultLabel(err), time.Since(start))
	switch {
	case err == nil:
		return nil
	case errors.Is(err, context.DeadlineExceeded):
		go u.probe(s)
		return unavailable("upstream_timeout", r.call.requestID)
	case errors.Is(err, context.Canceled):
		return err
	}
	var werr *jsonrpc.Error
	if errors.As(err, &werr) {
		return werr // the upstream's own protocol error, relayed as is
	}
	p.opts.Log.Warn("upstream call failed", "upstream", u.Name, "request_id", r.call.requestID, "err", err)
	return unavailable("upstream_error", r.call.requestID)
}

func resultLabel(err error) string {
	if err != nil {
		return "error"
	}
	return "ok"
}

func contentSize(cs []mcp.Content) int {
	n := 0
	for _, c := range cs {
		switch x := c.(type) {
		case *mcp.TextContent:
			n += len(x.Text)
		case *mcp.ImageContent:
			n += len(x.Data)
		case *mcp.AudioContent:
			n += len(x.Data)
		case *mcp.EmbeddedResource:
			if x.Resource != nil {
				n += len(x.Resource.Text) + len(x.Resource.Blob)
			}
		}
	}
	return n
}

// subscribeUpstream forwards an allowed resources/subscribe.
func (p *Proxy) subscribeUpstream(ctx context.Context, req *mcp.SubscribeRequest) error {
	u, ok := p.catalog.resourceUpstream(req.Params.URI)
	if !ok {
		return errors.New("unknown resource")
	}
	s, err := u.Session()
	if err != nil {
		return err
	}
	return s.Subscribe(ctx, &mcp.SubscribeParams{URI: req.Params.URI})
}

// complete forwards an allowed completion/complete, de-namespacing prompts.
func (p *Proxy) complete(ctx context.Context, req *mcp.CompleteRequest) (*mcp.CompleteResult, error) {
	params := *req.Params
	ref := *params.Ref
	var u *Upstream
	switch ref.Type {
	case "ref/prompt":
		e, ok := p.catalog.prompt(ref.Name)
		if !ok {
			return nil, errors.New("unknown prompt")
		}
		u, ref.Name = e.up, e.original
	default:
		up, ok := p.catalog.resourceUpstream(ref.URI)
		if !ok {
			return nil, errors.New("unknown resource")
		}
		u = up
	}
	params.Ref = &ref
	s, err := u.Session()
	if err != nil {
		return nil, err
	}
	return s.Complete(ctx, &params)
}

func (p *Proxy) relayProgress(ctx context.Context, n *mcp.ProgressNotificationParams) {
	tok, _ := n.ProgressToken.(string)
	v, ok := p.progress.Load(tok)
	if !ok {
		return // not ours, or the call is over
	}
	rt := v.(progressRoute)
	rt.session.NotifyProgress(rt.ctx, &mcp.ProgressNotificationParams{
		ProgressToken: rt.token, Progress: n.Progress, Total: n.Total, Message: n.Message,
	})
}

func (p *Proxy) relayResourceUpdated(ctx context.Context, n *mcp.ResourceUpdatedNotificationParams) {
	p.server.ResourceUpdated(ctx, &mcp.ResourceUpdatedNotificationParams{URI: n.URI})
}

// serverRequest decides a request an upstream sends towards an agent. It is
// denied unless policy permits it for that upstream and agent, and unless
// exactly one agent session has calls in flight on the upstream (otherwise
// there is no way to know whose it is).
func (p *Proxy) serverRequest(ctx context.Context, u *Upstream, method string, req mcp.Request) (mcp.Result, error) {
	action := map[string]string{
		"sampling/createMessage": policy.ActionSampling,
		"elicitation/create":     policy.ActionElicitation,
		"roots/list":             policy.ActionListRoots,
	}[method]
	e := audit.NewEvent(audit.TypeServer, p.opts.Now())
	e.RequestID, e.Method, e.Action, e.Upstream = newRequestID(), method, action, u.Name
	deny := func(code string) error {
		e.Code = code
		if err := p.opts.Recorder.Record(ctx, e); err != nil {
			p.opts.Log.Error("audit write failed", "err", err)
		}
		return denial(code, e.RequestID)
	}
	ss := u.soleCaller()
	if ss == nil {
		return nil, deny(ReasonAmbiguousSession)
	}
	pr := p.sessionPrincipal(ss)
	if pr == nil {
		return nil, deny(ReasonAmbiguousSession)
	}
	e.Agent, e.SessionID, e.Target = pr.Agent, ss.ID(), pr.Agent
	d := p.opts.Decider.Decide(&policy.Input{
		Upstream: u.Name, Action: action, RequestID: e.RequestID, SessionID: ss.ID(), Method: method,
		Target: policy.Target{Kind: policy.KindAgent, ID: pr.Agent},
	})
	e.Policies, e.Reasons, e.Errors, e.PolicyVersion = d.Policies, d.Reasons, d.Errors, d.Version
	if !d.Allow {
		return nil, deny(d.Code)
	}
	e.Outcome = audit.OutcomeAllow
	if err := p.opts.Recorder.Record(ctx, e); err != nil {
		return nil, denial(ReasonAuditUnavailable, e.RequestID)
	}
	switch params := req.GetParams().(type) {
	case *mcp.CreateMessageParams:
		return ss.CreateMessage(ctx, params)
	case *mcp.CreateMessageWithToolsParams:
		return ss.CreateMessageWithTools(ctx, params)
	case *mcp.ElicitParams:
		return ss.Elicit(ctx, params)
	case *mcp.ListRootsParams:
		return ss.ListRoots(ctx, params)
	}
	return nil, denial(ReasonMethodNotAllowed, e.RequestID)
}
