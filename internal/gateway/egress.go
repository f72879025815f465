package gateway

import (
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/egress"
	"github.com/portcullis-dev/portcullis/internal/mcpproxy"
	"github.com/portcullis-dev/portcullis/internal/reason"
)

// egressProxies are the running launches' ways out, by upstream, so that
// containment can cut them.
type egressProxies struct {
	mu sync.Mutex
	by map[string]map[*egress.Proxy]struct{}
}

// egressHooks audits the connections of upstream's sandboxed servers
// through their egress proxy (one event when a connection is decided,
// one when an allowed one ends, with its byte counts), raises an
// egress_violation alert on a destination off the list, and keeps each
// launch's proxy where quarantineUpstream can cut it.
func (g *Gateway) egressHooks(upstream string) mcpproxy.EgressHooks {
	return mcpproxy.EgressHooks{
		Record: func(e egress.Event) { g.egressEvent(upstream, e) },
		Opened: func(p *egress.Proxy) func() {
			ep := &g.egressProxies
			ep.mu.Lock()
			defer ep.mu.Unlock()
			if ep.by == nil {
				ep.by = map[string]map[*egress.Proxy]struct{}{}
			}
			if ep.by[upstream] == nil {
				ep.by[upstream] = map[*egress.Proxy]struct{}{}
			}
			ep.by[upstream][p] = struct{}{}
			return func() {
				ep.mu.Lock()
				delete(ep.by[upstream], p)
				ep.mu.Unlock()
			}
		},
	}
}

// cutEgress closes the way out of every running launch of upstream (its
// open tunnels included): a contained server reaches nothing more.
func (g *Gateway) cutEgress(upstream string) int {
	ep := &g.egressProxies
	ep.mu.Lock()
	var ps []*egress.Proxy
	for p := range ep.by[upstream] {
		ps = append(ps, p)
	}
	ep.mu.Unlock()
	for _, p := range ps {
		p.Close()
	}
	return len(ps)
}

var egressCodes = map[string]struct {
	code    reason.Code
	outcome audit.Outcome
}{
	egress.Allowed:    {reason.EgressAllowed, audit.OutcomeAllow},
	egress.Refused:    {reason.EgressRefused, audit.OutcomeDeny},
	egress.Failed:     {reason.EgressFailed, audit.OutcomeError},
	egress.Closed:     {reason.EgressClosed, audit.OutcomeInfo},
	egress.Suppressed: {reason.EgressSuppressed, audit.OutcomeInfo},
	egress.Cut:        {reason.EgressCut, audit.OutcomeDeny},
}

func (g *Gateway) egressEvent(upstream string, e egress.Event) {
	c, ok := egressCodes[e.Outcome]
	if !ok {
		c = egressCodes[egress.Failed]
	}
	ev := audit.New(audit.TypeEgress, c.outcome, c.code, e.Time, audit.Subject{})
	ev.Upstream, ev.Method = upstream, e.Method
	if e.Host != "" {
		ev.Target = net.JoinHostPort(e.Host, strconv.Itoa(int(e.Port)))
	}
	switch e.Outcome {
	case egress.Allowed:
		ev.Detail = fmt.Sprintf("%s: to %s by rule %s", e.Launch, e.Addr, e.Rule)
	case egress.Closed:
		ev.Detail = fmt.Sprintf("%s: to %s: %d bytes sent, %d received in %s", e.Launch, e.Addr, e.Sent, e.Received, e.Duration.Round(time.Millisecond))
		ev.LatencyMicros = e.Duration.Microseconds()
	default:
		ev.Detail = e.Launch + ": " + e.Reason
	}
	// Queued, off the server's path; a full queue is logged and counted,
	// never silent.
	if err := g.recorder.Submit(ev); err != nil {
		g.metrics.AuditWrite(1, err)
		g.log.Error("audit event lost", "type", ev.Type, "code", ev.Code, "upstream", upstream, "err", err)
	}
	if e.Outcome == egress.Refused {
		for _, al := range g.detector.ObserveEgress(upstream, ev.Target, e.Reason, e.Time) {
			g.raise(al, e.Time)
		}
	}
}
