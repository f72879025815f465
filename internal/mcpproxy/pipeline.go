package mcpproxy

import (
	"context"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/reason"
	"github.com/portcullis-dev/portcullis/internal/telemetry"
)

// stage is one step of a method's pipeline. It returns nil to go on, or a
// *refusal (any other error is an internal refusal) to stop the request.
type stage struct {
	name string
	run  func(p *Proxy, ctx context.Context, c *call) error
}

// The stages. Several methods share a stage name with a method-specific
// implementation (resolve finds a tool, a prompt or a resource).
var (
	stAdmit        = stage{"admit", admit}
	stResolveTool  = stage{"resolve", resolveTool}
	stResolvePrmpt = stage{"resolve", resolvePrompt}
	stResolveRes   = stage{"resolve", resolveResource}
	stResolveCompl = stage{"resolve", resolveCompletion}
	stResolveTask  = stage{"resolve", resolveTask}
	stArguments    = stage{"arguments", boundArguments}
	stPromptArgs   = stage{"arguments", promptArguments}
	stTaskScope    = stage{"task_scope", taskScope}
	stBudget       = stage{"budget", rateAndBudget}
	stScreenArgs   = stage{"screen_arguments", screenArguments}
	stDecide       = stage{"decide", decide}
	stCommit       = stage{"commit", commit}
	stRelay        = stage{"relay", relay}
	stScreenResult = stage{"screen_result", screenResult}
	stReply        = stage{"reply", reply}
	stGather       = stage{"gather", gather}
	stFilter       = stage{"filter", filterList}
	stCommitList   = stage{"commit", commitList}
	stCommitLevel  = stage{"commit", commitLevel}
	stGatherTasks  = stage{"gather", gatherTasks}
	stBroadcast    = stage{"relay", broadcast}
	stOpen         = stage{"open", openSession}
	stConnect      = stage{"connect", connectUpstreams}
	stPong         = stage{"reply", pong}
	// Requests an upstream sends towards its agent.
	stRoute        = stage{"route", routeToAgent}
	stDecideServer = stage{"decide", decideServerRequest}
	stScreenServer = stage{"screen_request", screenServerRequest}
	stRelayAgent   = stage{"relay", relayToAgent}
	stScreenAnswer = stage{"screen_answer", screenAgentAnswer}
	stReplyServer  = stage{"reply", replyToUpstream}
	stSubscription = stage{"subscription", noteSubscription}
	stScreenTasks  = stage{"screen_result", screenTaskList}
)

// pipelines are the stages of each method an agent may call, in order. The
// order is a security invariant: nothing is relayed before it was decided
// and the decision committed; no result reaches the agent before it was
// screened. docs/architecture.md lists the same (TestPipelinesMatchTheDocs).
var pipelines = map[string][]stage{
	"tools/call":               {stAdmit, stResolveTool, stArguments, stTaskScope, stBudget, stScreenArgs, stDecide, stCommit, stRelay, stScreenResult, stReply},
	"prompts/get":              {stAdmit, stResolvePrmpt, stPromptArgs, stScreenArgs, stDecide, stCommit, stRelay, stScreenResult, stReply},
	"resources/read":           {stAdmit, stResolveRes, stScreenArgs, stDecide, stCommit, stRelay, stScreenResult, stReply},
	"resources/subscribe":      {stAdmit, stResolveRes, stScreenArgs, stDecide, stCommit, stRelay, stSubscription, stReply},
	"resources/unsubscribe":    {stAdmit, stResolveRes, stScreenArgs, stDecide, stCommit, stRelay, stSubscription, stReply},
	"completion/complete":      {stAdmit, stResolveCompl, stScreenArgs, stDecide, stCommit, stRelay, stScreenResult, stReply},
	"tasks/get":                {stAdmit, stResolveTask, stScreenArgs, stCommit, stRelay, stScreenResult, stReply},
	"tasks/result":             {stAdmit, stResolveTask, stScreenArgs, stCommit, stRelay, stScreenResult, stReply},
	"tasks/cancel":             {stAdmit, stResolveTask, stScreenArgs, stCommit, stRelay, stScreenResult, stReply},
	"tools/list":               {stAdmit, stGather, stFilter, stCommitList, stReply},
	"prompts/list":             {stAdmit, stGather, stFilter, stCommitList, stReply},
	"resources/list":           {stAdmit, stGather, stFilter, stCommitList, stReply},
	"resources/templates/list": {stAdmit, stGather, stFilter, stCommitList, stReply},
	"tasks/list":               {stAdmit, stGatherTasks, stScreenTasks, stCommitList, stReply},
	"logging/setLevel":         {stAdmit, stCommitLevel, stBroadcast, stReply},
	"initialize":               {stOpen, stConnect, stReply},
	"ping":                     {stPong},
}

// serverPipelines are the stages of each request an upstream may send to
// its agent.
var serverPipelines = map[string][]stage{
	"sampling/createMessage": {stRoute, stDecideServer, stScreenServer, stCommit, stRelayAgent, stScreenAnswer, stReplyServer},
	"elicitation/create":     {stRoute, stDecideServer, stScreenServer, stCommit, stRelayAgent, stScreenAnswer, stReplyServer},
	"roots/list":             {stRoute, stDecideServer, stScreenServer, stCommit, stRelayAgent, stScreenAnswer, stReplyServer},
}

// stageTimer observes stage latencies; the observers are looked up once
// per (method, stage), not per call.
type stageTimer struct {
	obs map[string][]prometheus.Observer
}

func newStageTimer(p *Proxy) stageTimer {
	t := stageTimer{obs: map[string][]prometheus.Observer{}}
	for _, set := range []map[string][]stage{pipelines, serverPipelines} {
		for method, stages := range set {
			obs := make([]prometheus.Observer, len(stages))
			for i, st := range stages {
				obs[i] = p.opts.Metrics.StageObserver(method, st.name)
			}
			t.obs[method] = obs
		}
	}
	return t
}

// run runs c through stages. Whichever stage refuses, the refusal is
// recorded and answered; a panic in a stage is an internal refusal.
func (p *Proxy) run(ctx context.Context, c *call, stages []stage) {
	defer c.release()
	if p.opts.Tracer != nil {
		ctx = telemetry.WithRemoteParent(ctx, telemetry.TraceContext{TraceID: c.traceID, ParentID: c.parentSpan})
	}
	ctx, span := p.opts.Tracer.Start(ctx, "mcp "+c.method, telemetry.KindServer, c.traceID)
	span.Set("mcp.method", c.method)
	span.Set("portcullis.request_id", c.requestID)
	if c.principal != nil {
		span.Set("portcullis.agent", c.principal.Agent)
	}
	obs := p.timer.obs[c.method]
	var failed error
	defer func() { span.Finish(failed) }()
	for i, st := range stages {
		t0 := time.Now()
		sctx, sspan := p.opts.Tracer.Start(ctx, st.name, telemetry.KindInternal, c.traceID)
		err := p.runStage(sctx, c, st)
		sspan.Finish(err)
		if obs != nil && obs[i] != nil {
			obs[i].Observe(time.Since(t0).Seconds())
		}
		if err != nil {
			failed = err
			p.refuse(ctx, c, asRefusal(err))
			return
		}
	}
}

func (p *Proxy) runStage(ctx context.Context, c *call, st stage) (err error) {
	defer func() {
		if r := recover(); r != nil {
			p.opts.Log.Error("panic in a pipeline stage; denied", "method", c.method, "stage", st.name, "panic", r, "stack", string(debug.Stack()))
			err = deny(reason.Internal).withDetail(fmt.Sprintf("stage %s: %v", st.name, r))
		}
	}()
	return st.run(p, ctx, c)
}

// refuse records a refusal (unless its stage did) and answers with it. The
// record comes first: an agent never hears of a denial the log lacks.
func (p *Proxy) refuse(ctx context.Context, c *call, r *refusal) {
	if !r.recorded && c.event != nil && !c.committed {
		e := c.event
		e.Code = r.code
		if e.Outcome != audit.OutcomeDeny && r.rpcCode == CodeUnavailable {
			e.Outcome = audit.OutcomeError
		}
		if r.detail != "" {
			e.Detail = truncate(r.detail, 500)
		}
		if e.PolicyVersion == "" {
			e.PolicyVersion = p.opts.Decider.Version()
		}
		p.record(ctx, c, false)
	} else if c.committed && c.event != nil && (r.rpcCode == CodeUnavailable || r.code == reason.Internal) {
		// Allowed and recorded; the upstream could not serve it, or the
		// gateway failed after the decision. The outcome is an event of
		// its own, attributed like the decision.
		typ := audit.TypeUpstream
		if r.code == reason.Internal {
			typ = audit.TypeDecision
		}
		e := p.followUp(c, typ, r.code)
		e.Outcome, e.Detail = audit.OutcomeError, truncate(r.detail, 500)
		p.recordBackground(e)
	}
	if r.code != "" {
		p.opts.Metrics.Refusal(r.code)
	}
	if c.committed {
		// A call allowed and relayed that fails after (its result too
		// large, the upstream gone): the agent hears of it, as it would of
		// the result, once the decision is on disk. The answer is a
		// refusal either way.
		p.onDisk(ctx, c)
	}
	c.answer(r.message(c.msg.IDBytes(), c.requestID))
}

// onDisk waits until c's committed decision is on disk, unless
// audit.sync background lets what the agent receives go first. nil when
// there is nothing to wait for (no commit receipt: recorded durably, or
// not allowed).
func (p *Proxy) onDisk(ctx context.Context, c *call) error {
	if c.receipt == nil || p.opts.SyncBackground {
		return nil
	}
	return c.receipt.Durable(ctx)
}

// record writes c's decision event: durably, or committed to the log
// when the disk may follow later (durable=false). It returns false if the
// log could not take it; the caller must deny.
func (p *Proxy) record(ctx context.Context, c *call, earlyOK bool) bool {
	e := c.event
	e.LatencyMicros = p.opts.Now().Sub(c.start).Microseconds()
	var err error
	if earlyOK && !p.opts.SyncBeforeRelay {
		c.receipt, err = p.opts.Recorder.Commit(ctx, e)
	} else {
		err = p.opts.Recorder.Record(ctx, e)
	}
	p.opts.Metrics.Decision(e.Action, string(e.Outcome), p.opts.Now().Sub(c.start))
	c.committed = err == nil
	if err != nil {
		p.opts.Log.Error("audit write failed; denying", "request_id", c.requestID, "err", err)
		return false
	}
	return true
}
