package gateway

import (
	"context"
	"crypto/rand"
	"time"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/memory"
	"github.com/portcullis-dev/portcullis/internal/reason"
	"github.com/portcullis-dev/portcullis/internal/screen"
)

// memoryTechniques: ATLAS' AI agent context poisoning (memory).
var memoryTechniques = []string{"AML.T0080"}

// newMemory builds the built-in memory over the gateway's store: versions
// committed through the gateway's recorder, written text screened for
// injection, secrets and personal data, a version that fails
// verification an alert.
func newMemory(g *Gateway) (*memory.Service, error) {
	rules := []screen.Rule{
		{Category: screen.CategoryInjection, Action: screen.ActionFlag},
		{Category: screen.CategorySecret, Action: screen.ActionFlag},
		{Category: screen.CategoryPersonal, Action: screen.ActionFlag},
	}
	sc, err := newMemoryScreener(g.cfg, rules)
	if err != nil {
		return nil, err
	}
	ttl := g.cfg.Memory.TTL
	untrusted := ttl.Untrusted.D()
	if untrusted == 0 {
		untrusted = config.DefaultUntrustedTTL
	}
	return memory.New(memory.Options{
		Store:  g.store,
		Record: func(ctx context.Context, e *audit.Event) error { return g.recorder.Record(ctx, e) },
		Screen: func(text string) []string {
			v := sc.Scan(screen.DirArguments, "memory", text)
			var cats []string
			for _, d := range v.Detections {
				cats = append(cats, d.Category)
			}
			return cats
		},
		Alert:  g.memoryAlert,
		Shared: g.cfg.Memory.Shared,
		TTL:    memory.TTL{Default: ttl.Default.D(), Untrusted: untrusted, Session: ttl.Session.D()},
	}), nil
}

// memoryAlert raises the alert of a memory version that failed
// verification (its content never returned).
func (g *Gateway) memoryAlert(e *audit.Event) {
	al := audit.New(audit.TypeAlert, audit.OutcomeInfo, reason.AlertMemoryTampered, time.Now(),
		audit.Subject{Agent: e.Agent, User: e.User, Task: e.Task, SessionID: e.SessionID, RequestID: e.RequestID})
	al.Target, al.Severity, al.Techniques, al.Detail = e.Target, "high", memoryTechniques, e.Detail
	al.Alert = "al-" + rand.Text()[:16]
	g.recordNow(al)
	g.metrics.Alert(string(reason.AlertMemoryTampered), "high")
	g.log.Error("memory: a version failed verification", "scope", e.Target, "detail", e.Detail)
}
