package console

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/reason"
)

// BenchmarkPages is each page's server time over a log of
// PORTCULLIS_BENCH_EVENTS events (default a million: docs/console.md),
// 50 agents, a session per 20 calls, screening and alerts mixed in.
//
//	go test -run XX -bench Pages -benchtime 20x ./internal/console
func BenchmarkPages(b *testing.B) {
	n := 1_000_000
	if v, err := strconv.Atoi(os.Getenv("PORTCULLIS_BENCH_EVENTS")); err == nil && v > 0 {
		n = v
	}
	s, ck, _ := newTestServer(b)
	ctx := context.Background()
	now := time.Now()
	const batch = 5000
	var probe *audit.Event
	for i := 0; i < n; i += batch {
		evs := make([]*audit.Event, 0, batch)
		for j := i; j < min(n, i+batch); j++ {
			who := audit.Subject{Agent: fmt.Sprintf("agent-%d", j%50), SessionID: fmt.Sprintf("s-%d", j/20), RequestID: fmt.Sprintf("r-%d", j), User: fmt.Sprintf("user-%d", j%7)}
			t := now.Add(-time.Duration(n-j) * 100 * time.Millisecond)
			var e *audit.Event
			switch {
			case j%100 == 0:
				e = audit.New(audit.TypeAlert, audit.OutcomeInfo, reason.AlertRate, t, who)
				e.Alert = fmt.Sprintf("al-%d", j)
			case j%20 == 0:
				e = audit.New(audit.TypeScreening, audit.OutcomeInfo, reason.Redacted, t, who)
				e.Detail = "result: secret/aws-key:redact×1"
			default:
				e = audit.Decision(audit.TypeDecision, t, who, "tools/call")
				e.Action, e.Target, e.PolicyVersion = "call_tool", fmt.Sprintf("demo__tool_%d", j%30), "sha256:x"
				if j%10 != 0 {
					e.Outcome, e.Policies = audit.OutcomeAllow, []string{"p"}
				} else {
					e.Code = reason.NoPermit
				}
			}
			if j == n/2 {
				probe = e
			}
			evs = append(evs, e)
		}
		if err := audit.Append(ctx, s.o.Store, evs); err != nil {
			b.Fatal(err)
		}
	}
	h := s.Handler()
	for _, page := range []string{"/console/", "/console/approvals", "/console/alerts", "/console/audit", "/console/audit?agent=agent-7",
		"/console/audit?session=" + probe.SessionID, "/console/audit?request=" + probe.RequestID, "/console/audit/request/" + probe.RequestID,
		"/console/audit?type=alert&outcome=info", "/console/tools", "/console/agents", "/console/policy"} {
		b.Run(page, func(b *testing.B) {
			for b.Loop() {
				s.ovMu.Lock()
				s.ovData = nil // the figures computed, not reused
				s.ovMu.Unlock()
				req := httptest.NewRequest("GET", page, nil)
				req.AddCookie(ck)
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatalf("%s: %d", page, rec.Code)
				}
			}
		})
	}
}
