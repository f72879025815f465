package gateway

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/portcullis-dev/portcullis/internal/reason"
)

// BenchmarkContainment measures containment latency through a real gateway
// under concurrent load (four other sessions calling as fast as they can):
// from sending a session's anomalous call (a tool outside its baseline,
// answered by terminate_session) to the refusal of its next call, and
// from the same call to the refusal of a new session of the agent
// (revoke_agent's containment, which precedes the stored revocation).
// Reports p50 and p99 in milliseconds; "baseline" is two normal calls of
// a session under the same load, for comparison.
func BenchmarkContainment(b *testing.B) {
	for _, step := range []string{"baseline", "terminate_session", "revoke_agent"} {
		b.Run(step, func(b *testing.B) {
			action, automatic := step, ""
			switch step {
			case "revoke_agent":
				automatic = ", automatic: true"
			case "baseline":
				action = "terminate_session"
			}
			h := startGateway(b, demoConfig+`tools:
  - {name: demo__read_file, classification: [read_only]}
limits: {agent_calls_per_minute: -1, repeat_call_limit: -1}
detection:
  baselines:
    - {agent: mailer, tools: ["demo__read_file"]}
  response:
    - {alerts: [unexpected_tool], action: `+action+automatic+`}
`, map[string]string{"policy.cedar": demoPolicy})
			defer h.stop()
			ctx, stop := context.WithCancel(context.Background())
			read := &mcp.CallToolParams{Name: "demo__read_file", Arguments: map[string]any{"path": "notes/meeting.txt"}}
			send := &mcp.CallToolParams{Name: "demo__send_message", Arguments: map[string]any{"to": "bob@example.com", "body": "hi"}}
			var wg sync.WaitGroup
			for range 4 {
				s := h.mustConnect("reader")
				wg.Add(1)
				go func() {
					defer wg.Done()
					for ctx.Err() == nil {
						s.CallTool(ctx, read)
					}
				}()
			}
			var lat []time.Duration
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				s := h.mustConnect("mailer")
				var other *mcp.ClientSession
				tok := h.token("mailer", time.Minute)
				b.StartTimer()
				t0 := time.Now()
				if step == "baseline" {
					// The same two calls' round trips, nothing contained.
					_, err := s.CallTool(context.Background(), read)
					if err == nil {
						_, err = s.CallTool(context.Background(), read)
					}
					lat = append(lat, time.Since(t0))
					b.StopTimer()
					if err != nil {
						b.Fatal(err)
					}
					s.Close()
					b.StartTimer()
					continue
				}
				_, err := s.CallTool(context.Background(), send)
				assertDenied(b, err, reason.Contained)
				if step == "revoke_agent" {
					other, err = h.connect(tok)
					if err == nil {
						_, err = other.CallTool(context.Background(), read)
					}
				} else {
					_, err = s.CallTool(context.Background(), read)
				}
				lat = append(lat, time.Since(t0))
				b.StopTimer()
				if err == nil {
					b.Fatal("the next call was not refused")
				}
				s.Close()
				if other != nil {
					other.Close()
				}
				// Undo, so that every iteration starts uncontained.
				h.g.proxy.Release("", "mailer")
				h.g.escMu.Lock()
				h.g.contained = nil
				h.g.escMu.Unlock()
				h.g.store.Unrevoke(context.Background(), "agent", "mailer")
				h.g.revs.Refresh(context.Background(), h.g.store)
				b.StartTimer()
			}
			b.StopTimer()
			stop()
			wg.Wait()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		})
	}
}
