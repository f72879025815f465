package mcpproxy

import (
	"errors"
	"strconv"
	"time"

	"github.com/portcullis-dev/portcullis/internal/reason"
	"github.com/portcullis-dev/portcullis/internal/transport"
	"github.com/portcullis-dev/portcullis/internal/wire"
)

// JSON-RPC error codes the gateway returns, in the implementation-defined
// range and clear of the codes the MCP SDKs use (-32001..-32005, -32002,
// -32020..-32022, -32042).
const (
	CodeDenied      = -32030 // refused: authentication, policy, limits
	CodeUnavailable = -32031 // allowed, but the upstream could not serve it
	// CodeURLElicitation is MCP's URLElicitationRequiredError: the user
	// must visit a URL (here: to authorize the gateway at an upstream).
	CodeURLElicitation = -32042
)

// refusal is how a stage stops a request. The runner records it (unless
// the stage already did) and answers the agent with message().
type refusal struct {
	code    reason.Code // for the audit record and the agent
	rpcCode int64       // JSON-RPC error code of the answer
	text    string      // the answer's message
	detail  string      // for the audit record only, never the agent
	// result, if set, answers the request with this result instead of an
	// error: a schema violation is a tool result the model can act on.
	result []byte
	// recorded: the stage already committed the denial event.
	recorded bool
	// retryAfter, if set, tells the agent when trying again may succeed
	// (the answer's data carries it as retry_after_ms).
	retryAfter time.Duration
	// visit, if set, is the URL the user must visit (the answer's data
	// carries it as a URL elicitation).
	visit *transport.AuthorizationRequired
}

func (r *refusal) Error() string { return r.text }

// deny refuses by policy, limit or protocol.
func deny(code reason.Code) *refusal {
	return &refusal{code: code, rpcCode: CodeDenied, text: "denied by portcullis: " + string(code)}
}

// unavailable reports that an allowed request could not be served.
func unavailable(code reason.Code) *refusal {
	return &refusal{code: code, rpcCode: CodeUnavailable, text: "portcullis: " + string(code)}
}

func (r *refusal) withDetail(d string) *refusal { r.detail = d; return r }

// message is the answer to request id.
func (r *refusal) message(id []byte, requestID string) []byte {
	if r.result != nil {
		return wire.NewResponse(id, r.result)
	}
	data := []byte(`{"reason":`)
	data = wire.AppendString(data, string(r.code))
	if requestID != "" {
		data = append(data, `,"request_id":`...)
		data = wire.AppendString(data, requestID)
	}
	if r.retryAfter > 0 {
		data = append(data, `,"retry_after_ms":`...)
		data = strconv.AppendInt(data, r.retryAfter.Milliseconds(), 10)
	}
	if v := r.visit; v != nil {
		data = append(data, `,"elicitations":[{"mode":"url","elicitationId":`...)
		data = wire.AppendString(data, v.ID)
		data = append(data, `,"url":`...)
		data = wire.AppendString(data, v.URL)
		data = append(data, `,"message":`...)
		data = wire.AppendString(data, "Authorize Portcullis to use "+v.Upstream+" on your behalf.")
		data = append(data, `}]`...)
	}
	data = append(data, '}')
	return wire.NewError(id, r.rpcCode, r.text, data)
}

// upstreamFailure is the refusal for a call the upstream could not take:
// busy, down, or waiting for someone's authorization (the user's: their
// client is asked to open the URL; an operator's: the agent is told only
// that it waits).
func upstreamFailure(err error) *refusal {
	var ar *transport.AuthorizationRequired
	switch {
	case errors.As(err, &ar) && ar.PerUser && ar.URL != "":
		r := unavailable(reason.UpstreamAuthorizationRequired).withDetail(err.Error())
		r.rpcCode, r.visit = CodeURLElicitation, ar
		r.text = "portcullis: " + ar.Upstream + " needs your authorization: open the URL given"
		return r
	case errors.As(err, &ar):
		return unavailable(reason.UpstreamAuthorizationRequired).withDetail(err.Error())
	case errors.Is(err, ErrUpstreamSessions):
		return unavailable(reason.UpstreamBusy).withDetail(err.Error())
	}
	return unavailable(reason.UpstreamUnavailable).withDetail(err.Error())
}

// asRefusal turns any error a stage returns into a refusal (an unexpected
// error is an internal one: deny).
func asRefusal(err error) *refusal {
	var r *refusal
	if errors.As(err, &r) {
		return r
	}
	return deny(reason.Internal).withDetail(err.Error())
}
