package gateway

import (
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/egress"
	"github.com/portcullis-dev/portcullis/internal/reason"
)

// egressRecorder audits the connections of upstream's sandboxed servers
// through their egress proxy (one event when a connection is decided,
// one when an allowed one ends, with its byte counts) and raises an
// egress_violation alert on a destination off the list.
func (g *Gateway) egressRecorder(upstream string) func(egress.Event) {
	return func(e egress.Event) {
		code, outcome := reason.EgressFailed, audit.OutcomeError
		switch e.Outcome {
		case egress.Allowed:
			code, outcome = reason.EgressAllowed, audit.OutcomeAllow
		case egress.Refused:
			code, outcome = reason.EgressRefused, audit.OutcomeDeny
		case egress.Closed:
			code, outcome = reason.EgressClosed, audit.OutcomeInfo
		}
		now := time.Now()
		ev := audit.New(audit.TypeEgress, outcome, code, now, audit.Subject{})
		ev.Upstream, ev.Method = upstream, e.Method
		if e.Host != "" {
			ev.Target = net.JoinHostPort(e.Host, strconv.Itoa(int(e.Port)))
		}
		switch e.Outcome {
		case egress.Allowed:
			ev.Detail = fmt.Sprintf("to %s by rule %s", e.Addr, e.Rule)
		case egress.Closed:
			ev.Detail = fmt.Sprintf("to %s: %d bytes sent, %d received in %s", e.Addr, e.Sent, e.Received, e.Duration.Round(time.Millisecond))
			ev.LatencyMicros = e.Duration.Microseconds()
		default:
			ev.Detail = e.Reason
		}
		if e.Outcome != egress.Refused {
			g.recorder.Submit(ev)
			return
		}
		// A refusal is written durably, then answered.
		g.recordNow(ev)
		for _, al := range g.detector.ObserveEgress(upstream, ev.Target, e.Reason, now) {
			g.raise(al, now)
		}
	}
}
