package gateway

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/detect"
	"github.com/portcullis-dev/portcullis/internal/mcpproxy"
	"github.com/portcullis-dev/portcullis/internal/reason"
	"github.com/portcullis-dev/portcullis/internal/store"
)

// newDetector builds the detector of the configured baselines (validated
// with the configuration).
func newDetector(d config.Detection) *detect.Detector {
	var bs []detect.Baseline
	for i, b := range d.Baselines {
		db := detect.Baseline{Agent: b.Agent, Role: b.Role, Tools: b.Tools, CallsPerMinute: b.CallsPerMinute,
			Location: time.UTC, Source: fmt.Sprintf("detection.baselines[%d]", i)}
		if b.Timezone != "" {
			if loc, err := time.LoadLocation(b.Timezone); err == nil {
				db.Location = loc
			}
		}
		if b.ActiveHours != "" {
			db.ActiveFrom, db.ActiveTo, _ = config.ParseHours(b.ActiveHours)
		}
		bs = append(bs, db)
	}
	return detect.New(bs)
}

// detecting is the proxy's recorder: every decision it records is also
// shown to the detector, whose alerts are audited and answered.
type detecting struct {
	mcpproxy.Recorder
	g *Gateway
}

func (d detecting) Record(ctx context.Context, e *audit.Event) error {
	err := d.Recorder.Record(ctx, e)
	if err == nil {
		d.g.observe(e)
	}
	return err
}

func (d detecting) Commit(ctx context.Context, e *audit.Event) (*audit.Receipt, error) {
	r, err := d.Recorder.Commit(ctx, e)
	if err == nil {
		d.g.observe(e)
	}
	return r, err
}

// observe shows a recorded decision to the detector and answers its
// alerts: containment takes effect before the session's next message;
// revocation is written after.
func (g *Gateway) observe(e *audit.Event) {
	if g.detector.Empty() || e.Type != audit.TypeDecision {
		return
	}
	var roles []string
	if a, ok := g.cfg.Agent(e.Agent); ok {
		roles = a.Roles
	}
	for _, al := range g.detector.Observe(e, roles) {
		ev := audit.New(audit.TypeAlert, audit.OutcomeInfo, reason.Code(al.Class), al.Time,
			audit.Subject{Agent: al.Agent, User: al.User, Task: al.Task, Actors: al.Actors, SessionID: al.Session, RequestID: al.RequestID})
		ev.Target, ev.Severity, ev.Techniques = al.Target, al.Severity, al.Techniques
		ev.Detail = al.Evidence + " (baseline " + al.Baseline + ")"
		g.submit(ev)
		g.log.Warn("alert", "class", al.Class, "severity", al.Severity, "agent", al.Agent, "session", al.Session, "evidence", al.Evidence)
		g.respond(al)
	}
}

// actions orders the response actions by strength.
var actions = []string{"flag", "read_only", "terminate_session", "revoke_agent"}

// respond takes the strongest step the playbook gives alert al.
func (g *Gateway) respond(al detect.Alert) {
	step := ""
	for _, r := range g.cfg.Detection.Response {
		if len(r.Alerts) > 0 && !slices.Contains(r.Alerts, al.Class) {
			continue
		}
		if r.MinSeverity != "" && detect.SeverityRank(al.Severity) < detect.SeverityRank(r.MinSeverity) {
			continue
		}
		if slices.Index(actions, r.Action) > slices.Index(actions, step) {
			step = r.Action
		}
	}
	if step == "" {
		return
	}
	ev := audit.New(audit.TypeResponse, audit.OutcomeInfo, reason.Code(step), time.Now(),
		audit.Subject{Agent: al.Agent, User: al.User, Task: al.Task, SessionID: al.Session, RequestID: al.RequestID})
	ev.Detail = "for the " + al.Class + " alert: " + al.Evidence
	switch step {
	case "read_only":
		g.proxy.Contain(al.Session, al.Agent, mcpproxy.ReadOnly)
	case "terminate_session":
		g.proxy.Contain(al.Session, al.Agent, mcpproxy.Terminated)
	case "revoke_agent":
		g.proxy.Contain("", al.Agent, mcpproxy.Terminated)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := g.ops.Revoke(ctx, store.RevokeAgent, al.Agent, "portcullis-response", "alert "+al.Class+": "+al.Evidence); err != nil {
				g.log.Error("response: agent not revoked", "agent", al.Agent, "err", err)
			}
		}()
	}
	g.submit(ev)
}
