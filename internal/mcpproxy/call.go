package mcpproxy

import (
	"context"
	"sync"
	"time"

	"github.com/cedar-policy/cedar-go/types"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/identity"
	"github.com/portcullis-dev/portcullis/internal/policy"
	"github.com/portcullis-dev/portcullis/internal/screen"
	"github.com/portcullis-dev/portcullis/internal/wire"
)

// exchange is how one agent request is answered: related messages first
// (progress, log messages, requests to the agent), then the answer.
type exchange interface {
	// send writes a message related to the request before its answer; it
	// fails once the request is answered, or where the front has no way
	// to (the caller then uses the session's outbox).
	send(msg []byte) error
	// reply writes the answer. Later calls do nothing.
	reply(msg []byte)
}

// call is one agent request as it passes its pipeline. Stages fill it in
// order; a field is only read by stages after the one that sets it.
type call struct {
	method    string
	msg       *wire.Message // the agent's request, as received
	s         *Session
	principal *identity.Principal
	ex        exchange
	reply     func([]byte) // nil once answered or when nobody waits
	cancel    context.CancelFunc
	cancelled bool // by the agent (notifications/cancelled)

	requestID string
	traceID   string
	// parentSpan is the caller's span (from its traceparent): the parent
	// of the gateway's span of the request.
	parentSpan string
	event      *audit.Event
	start      time.Time

	// resolve
	up     *Upstream
	link   *link
	view   *sessionView
	tool   *toolEntry
	prompt *promptEntry
	task   taskInfo
	// taskReserved: room was made for the task this call may create.
	taskReserved bool
	target       policy.Target
	// arguments
	rawArgs    []byte
	cedarArgs  types.Record
	argMask    []screen.Finding
	findings   []string
	argsDigest string
	budgetLeft int64
	// decide and commit
	input     *policy.Input
	committed bool
	approved  bool // a reviewer approved it (holdForApproval)
	receipt   *audit.Receipt
	// relay
	upID []byte
	resp *wire.Message
	// progressToken is the agent's own token where the link replaced it.
	progressToken []byte
	out           []byte // the answer
	// lists
	list *listState
	// a request from an upstream to the agent
	server *serverCall

	releases []func()
	mu       sync.Mutex // guards reply after the answer (sends from other goroutines)
}

// release runs what stages registered to undo (slots), once.
func (c *call) release() {
	c.mu.Lock()
	rs := c.releases
	c.releases = nil
	c.mu.Unlock()
	for i := len(rs) - 1; i >= 0; i-- {
		rs[i]()
	}
}

func (c *call) onRelease(f func()) {
	c.mu.Lock()
	c.releases = append(c.releases, f)
	c.mu.Unlock()
}

// send writes a message related to the request: on its stream while it
// is open, else to the session's outbox.
func (c *call) send(msg []byte) {
	if c.ex != nil {
		if err := c.ex.send(msg); err == nil {
			return
		}
	}
	if c.s != nil {
		c.s.notify(msg)
	}
}

// answer replies once, after giving back the call's slots (an agent that
// sends its next request on reading the answer finds them free).
func (c *call) answer(msg []byte) {
	c.release()
	c.mu.Lock()
	r := c.reply
	c.reply = nil
	c.mu.Unlock()
	if r != nil {
		r(msg)
	}
}
