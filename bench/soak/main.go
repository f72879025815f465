// Command soak holds many concurrent agent sessions calling one fast HTTP
// upstream through `portcullis serve`, as a platform team would before a
// launch, and reports for each concurrency: calls served, shed
// (upstream_busy) and failed otherwise, latency percentiles, throughput
// against the gateway's own with a few clients measured in the same run,
// the gateway's CPU per call, and its resident memory sampled over time.
//
// The gateway runs with the default limits except the per-agent rate cap
// and the repeat breaker (lifted: every session calls the same tool with
// the same arguments as fast as it can), with authentication, Cedar, the
// default screening and the durable audit log on. Sessions are spread over
// -agents agent identities.
//
//	go run ./bench/soak -portcullis ./portcullis -sessions 200,1000 -duration 10m
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/portcullis-dev/portcullis/bench/internal/benchkit"
)

type options struct {
	binary, protocol, profile string
	levels                    []int
	baseline, agents, size    int
	duration, baselineFor     time.Duration
	warmup, sample            time.Duration
}

func main() {
	var o options
	var levels string
	flag.StringVar(&o.binary, "portcullis", "./portcullis", "portcullis binary")
	flag.StringVar(&o.protocol, "protocol", "2025-11-25", "MCP protocol version")
	flag.StringVar(&o.profile, "cpuprofile", "", "write the gateway's CPU profile here")
	flag.StringVar(&levels, "sessions", "200,1000", "concurrent agent sessions, one soak each")
	flag.IntVar(&o.baseline, "baseline", 16, "sessions of the baseline measured first")
	flag.IntVar(&o.agents, "agents", 10, "agent identities the sessions are spread over")
	flag.IntVar(&o.size, "size", 64, "result size in bytes")
	flag.DurationVar(&o.duration, "duration", 10*time.Minute, "length of each soak")
	flag.DurationVar(&o.baselineFor, "baseline-duration", time.Minute, "length of the baseline")
	flag.DurationVar(&o.warmup, "warmup", 2*time.Minute, "start of each phase left out of the figures (caches and the heap fill up)")
	flag.DurationVar(&o.sample, "sample", 10*time.Second, "interval between memory samples")
	flag.Parse()
	for _, s := range strings.Split(levels, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= 0 {
			fmt.Fprintln(os.Stderr, "soak: -sessions: want positive numbers")
			os.Exit(2)
		}
		o.levels = append(o.levels, n)
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
}

// phase is what one concurrency level measured, after its warm-up.
type phase struct {
	sessions       int
	ok, shed, fail int64
	firstFailure   string
	lat            []time.Duration
	callsPerS      float64
	cpuPerCallUs   float64
	rss            []int // KiB, sampled after the warm-up
	heap           []int // KiB of Go heap in use, sampled with rss
}

func run(o options) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	upURL, err := benchkit.StartUpstream(ctx)
	if err != nil {
		return err
	}
	top := o.baseline
	for _, l := range o.levels {
		top = max(top, l)
	}
	agents := make([]string, max(o.agents, 1))
	for i := range agents {
		agents[i] = fmt.Sprintf("agent-%d", i)
	}
	gw, err := benchkit.StartGateway(ctx, benchkit.Gateway{
		Binary: o.binary, UpstreamURL: upURL, Protocol: o.protocol, Agents: agents,
		MaxSessions: top + 100, Sync: "full", AuditSync: "before_answer", Profile: o.profile,
		// Each agent session has its own session with the upstream.
		Upstream: fmt.Sprintf("    max_sessions: %d\n", top+100),
	})
	if err != nil {
		return err
	}
	defer gw.Stop()
	fmt.Printf("soak: one HTTP upstream (%d-byte results) through portcullis serve; sessions over %d agents; warm-up %v left out\n",
		o.size, len(agents), o.warmup)
	base, err := soak(ctx, o, gw, agents, o.baseline, o.baselineFor)
	if err != nil {
		return err
	}
	report(base, base)
	for _, n := range o.levels {
		p, err := soak(ctx, o, gw, agents, n, o.duration)
		if err != nil {
			return err
		}
		report(p, base)
	}
	return nil
}

// soak runs n sessions, each calling as fast as its answers come, for d.
func soak(ctx context.Context, o options, gw *benchkit.Proc, agents []string, n int, d time.Duration) (*phase, error) {
	sessions := make([]*mcp.ClientSession, n)
	var mu sync.Mutex
	var openErr error
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32) // open them a few at a time
	for i := range sessions {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			s, err := benchkit.Connect(ctx, gw.URL, gw.Tokens[agents[i%len(agents)]], o.protocol)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				openErr = errors.Join(openErr, err)
				return
			}
			sessions[i] = s
		})
	}
	wg.Wait()
	defer func() {
		for _, s := range sessions {
			if s != nil {
				s.Close()
			}
		}
	}()
	if openErr != nil {
		return nil, fmt.Errorf("opening %d sessions: %w", n, openErr)
	}

	p := &phase{sessions: n}
	start := time.Now()
	measureFrom, end := start.Add(o.warmup), start.Add(o.warmup+d)
	var measuring atomic.Bool
	var okN, shedN, failN atomic.Int64
	lats := make([][]time.Duration, n)
	args := map[string]any{"size": o.size}
	for i, s := range sessions {
		wg.Go(func() {
			for time.Now().Before(end) {
				t0 := time.Now()
				res, err := s.CallTool(ctx, &mcp.CallToolParams{Name: "up__payload", Arguments: args})
				if err == nil && res.IsError {
					err = errors.New("tool error")
				}
				counted := measuring.Load()
				switch {
				case err == nil:
					if counted {
						okN.Add(1)
						lats[i] = append(lats[i], time.Since(t0))
					}
				case strings.Contains(err.Error(), "upstream_busy"):
					if counted {
						shedN.Add(1)
					}
				default:
					if counted {
						failN.Add(1)
					}
					mu.Lock()
					if p.firstFailure == "" {
						p.firstFailure = err.Error()
					}
					mu.Unlock()
					time.Sleep(10 * time.Millisecond) // a broken session must not spin
				}
			}
		})
	}
	// The warm-up, then the measured window with memory samples.
	time.Sleep(time.Until(measureFrom))
	cpu0, _ := benchkit.CPUTime(gw.PID())
	measuring.Store(true)
	t0 := time.Now()
	for now := time.Now(); now.Before(end); now = time.Now() {
		if kib, err := benchkit.RSS(gw.PID()); err == nil {
			p.rss = append(p.rss, kib)
			heap, _ := gw.Metric("go_memstats_heap_inuse_bytes ")
			p.heap = append(p.heap, int(heap/1024))
		}
		time.Sleep(min(o.sample, time.Until(end)))
	}
	cpu1, _ := benchkit.CPUTime(gw.PID())
	measuring.Store(false)
	window := time.Since(t0)
	wg.Wait()
	p.ok, p.shed, p.fail = okN.Load(), shedN.Load(), failN.Load()
	for _, l := range lats {
		p.lat = append(p.lat, l...)
	}
	p.callsPerS = float64(p.ok) / window.Seconds()
	if p.ok > 0 {
		p.cpuPerCallUs = float64((cpu1 - cpu0).Microseconds()) / float64(p.ok)
	}
	return p, nil
}

func report(p, base *phase) {
	fmt.Printf("\n%d sessions: %d calls served, %d shed (upstream_busy), %d failed otherwise\n", p.sessions, p.ok, p.shed, p.fail)
	if p.firstFailure != "" {
		fmt.Printf("  first failure: %s\n", p.firstFailure)
	}
	fmt.Printf("  latency p50 %.1f ms, p90 %.1f ms, p99 %.1f ms\n",
		benchkit.Pct(p.lat, 50)/1000, benchkit.Pct(p.lat, 90)/1000, benchkit.Pct(p.lat, 99)/1000)
	fmt.Printf("  throughput %.0f calls/s (%.2fx the %d-session figure; aim ≥ 1), gateway CPU %.0f µs per call (%.2fx)\n",
		p.callsPerS, p.callsPerS/base.callsPerS, base.sessions, p.cpuPerCallUs, p.cpuPerCallUs/base.cpuPerCallUs)
	if len(p.rss) > 0 {
		fmt.Printf("  RSS over time (KiB, every sample after the warm-up): %v\n  %s\n", p.rss, flatness("RSS", p.rss))
		fmt.Printf("  Go heap in use (KiB, same samples): %v\n  %s\n", p.heap, flatness("Go heap", p.heap))
	}
}

// flatness says whether samples stay within 10% of their least.
func flatness(what string, v []int) string {
	lo, hi := v[0], v[0]
	for _, x := range v {
		lo, hi = min(lo, x), max(hi, x)
	}
	verdict := "flat"
	if float64(hi-lo) > 0.1*float64(lo) {
		verdict = "NOT flat"
	}
	return fmt.Sprintf("%s min %d, max %d KiB: %s within 10%%", what, lo, hi, verdict)
}
