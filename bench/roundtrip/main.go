// Command roundtrip measures what the gateway adds to an MCP tools/call,
// against a bare reverse-proxy hop measured in the same run.
//
// It serves a Go streamable-HTTP upstream (a tool returning a payload of
// the requested size) in this process, and runs as separate processes the
// bare hop (bench/barehop) and the portcullis gateway in front of it, with
// authentication, Cedar, the default content screening and the durable
// audit log on. Interleaved in one run so that machine noise hits all legs
// alike, for each result size it measures:
//
//   - sequential round trips direct, through the bare hop and through the
//     gateway (p50, p99, and what each proxy adds);
//   - throughput with concurrent clients, and each proxy process's CPU per
//     call (from /proc) and, for the gateway, bytes allocated per call
//     (from its Go runtime metrics);
//
// then the gateway's resident memory idle and with N open agent sessions
// (each with its own upstream session), and the time to open one.
//
// The MCP protocol version is pinned on both legs (-protocol). Usage:
//
//	go run ./bench/roundtrip -portcullis ./portcullis -barehop ./barehop [-json out.json]
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/portcullis-dev/portcullis/bench/internal/benchkit"
)

type options struct {
	binary, barehop, protocol, jsonOut, sync, auditSync, syncWindow, profile, memProfile string
	calls, workers, sessions, runs                                                       int
	duration                                                                             time.Duration
	sizes                                                                                []int
}

func main() {
	var o options
	var sizes string
	flag.StringVar(&o.binary, "portcullis", "./portcullis", "portcullis binary")
	flag.StringVar(&o.barehop, "barehop", "./barehop", "bare reverse-proxy binary (bench/barehop)")
	flag.StringVar(&o.protocol, "protocol", "2025-11-25", "MCP protocol version on both legs")
	flag.StringVar(&o.jsonOut, "json", "", "also write the results as JSON to this file")
	flag.StringVar(&o.sync, "sync", "full", "store.synchronous of the gateway (full or normal)")
	flag.StringVar(&o.auditSync, "audit-sync", "background", "audit.sync of the gateway (background, its default with the local store; before_answer or before_relay)")
	flag.StringVar(&o.syncWindow, "sync-window", "", "audit.sync_window of the gateway (default: the gateway's)")
	flag.StringVar(&sizes, "sizes", "64,4096", "result sizes in bytes")
	flag.StringVar(&o.profile, "cpuprofile", "", "write the gateway's CPU profile here")
	flag.StringVar(&o.memProfile, "memprofile", "", "write the gateway's allocation profile here (when it stops)")
	flag.IntVar(&o.calls, "calls", 2000, "sequential calls per leg and size")
	flag.IntVar(&o.workers, "workers", 8, "concurrent clients in the throughput phase")
	flag.IntVar(&o.runs, "runs", 1, "measure each size this many times and report the medians (ratios: the median of each run's ratio)")
	flag.IntVar(&o.sessions, "sessions", 500, "open agent sessions for the memory measurement")
	flag.DurationVar(&o.duration, "duration", 5*time.Second, "length of each throughput phase")
	flag.Parse()
	for _, s := range strings.Split(sizes, ",") {
		n, err := strconv.Atoi(s)
		if err != nil {
			fmt.Fprintln(os.Stderr, "roundtrip: -sizes:", err)
			os.Exit(2)
		}
		o.sizes = append(o.sizes, n)
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "roundtrip:", err)
		os.Exit(1)
	}
}

// Leg is one path to the upstream.
type Leg struct {
	P50us, P99us     float64
	AddedP50us       float64 `json:",omitempty"`
	CallsPerS        float64
	CPUPerCallUs     float64 `json:",omitempty"` // the proxy process's CPU per call
	AllocPerCallByte float64 `json:",omitempty"`
}

// Size is the results for one result size.
type Size struct {
	Bytes                            int
	Direct, Bare, Gateway            Leg
	AddedP50Ratio, CPURatio, TPRatio float64 // gateway over bare hop
	// Stages is the gateway's mean time in each stage of tools/call over
	// the sequential calls (portcullis_stage_seconds).
	Stages []Stage
	// Runs are each run's ratios, in run order, when the figures above
	// are medians of several: how far a verdict is from the aims' lines.
	Runs []Ratios `json:",omitempty"`
}

// Ratios are one run's gateway over bare hop ratios.
type Ratios struct {
	AddedP50, CPU, Throughput float64
}

// Stage is a pipeline stage's mean time per call.
type Stage struct {
	Name   string
	MeanUs float64
}

// Results are what the harness prints.
type Results struct {
	Protocol, Sync, AuditSync string
	Calls, Workers, Runs      int
	Sizes                     []Size
	IdleRSSKiB                int
	Sessions                  int
	SessionsRSSKiB            int
	PerSessionBytes           float64
	SessionOpenDirectUs       float64
	SessionOpenGatewayUs      float64
	UpstreamSessionsOpened    int
	EventsPerSync             float64 // audit events each fsync covered, on average
	// StealShare is the share of the machine's CPU time the hypervisor
	// gave other tenants during the measurements (0 where /proc/stat says
	// nothing).
	StealShare float64
}

func run(o options) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	upURL, err := benchkit.StartUpstream(ctx)
	if err != nil {
		return err
	}
	bare, err := benchkit.StartBareHop(ctx, o.barehop, upURL)
	if err != nil {
		return err
	}
	defer bare.Stop()
	gw, err := benchkit.StartGateway(ctx, benchkit.Gateway{
		Binary: o.binary, UpstreamURL: upURL, Protocol: o.protocol, MaxSessions: o.sessions + 100,
		Sync: o.sync, AuditSync: o.auditSync, SyncWindow: o.syncWindow, Profile: o.profile, MemProfile: o.memProfile,
	})
	if err != nil {
		return err
	}
	defer gw.Stop()
	res := Results{Protocol: o.protocol, Sync: o.sync, AuditSync: o.auditSync, Calls: o.calls, Workers: o.workers, Runs: max(o.runs, 1), Sessions: o.sessions}
	time.Sleep(time.Second)
	if res.IdleRSSKiB, err = benchkit.RSS(gw.PID()); err != nil {
		return err
	}
	total0, steal0, statErr := benchkit.MachineCPU()
	for _, size := range o.sizes {
		var runs []Size
		for range max(o.runs, 1) {
			s, err := measureSize(ctx, o, size, upURL, bare, gw)
			if err != nil {
				return err
			}
			runs = append(runs, s)
		}
		res.Sizes = append(res.Sizes, medianSize(runs))
	}
	res.EventsPerSync = gw.EventsPerSync()
	if total1, steal1, err := benchkit.MachineCPU(); statErr == nil && err == nil && total1 > total0 {
		res.StealShare = float64(steal1-steal0) / float64(total1-total0)
	}
	if err := openSessions(ctx, gw, upURL, o, &res); err != nil {
		return err
	}
	print(res)
	if o.jsonOut != "" {
		b, _ := json.MarshalIndent(res, "", "  ")
		return os.WriteFile(o.jsonOut, append(b, '\n'), 0o644)
	}
	return nil
}

// medianSize combines runs of one size metric by metric: each figure is
// the median of the runs' figures, each ratio the median of the runs'
// ratios (every ratio is between legs measured in the same run).
func medianSize(runs []Size) Size {
	med := func(get func(*Size) float64) float64 {
		v := make([]float64, len(runs))
		for i := range runs {
			v[i] = get(&runs[i])
		}
		slices.Sort(v)
		if n := len(v); n%2 == 0 {
			return (v[n/2-1] + v[n/2]) / 2
		}
		return v[len(v)/2]
	}
	legMed := func(get func(*Size) *Leg) Leg {
		return Leg{
			P50us:            med(func(s *Size) float64 { return get(s).P50us }),
			P99us:            med(func(s *Size) float64 { return get(s).P99us }),
			AddedP50us:       med(func(s *Size) float64 { return get(s).AddedP50us }),
			CallsPerS:        med(func(s *Size) float64 { return get(s).CallsPerS }),
			CPUPerCallUs:     med(func(s *Size) float64 { return get(s).CPUPerCallUs }),
			AllocPerCallByte: med(func(s *Size) float64 { return get(s).AllocPerCallByte }),
		}
	}
	var stages []Stage
	for _, st := range runs[0].Stages {
		stages = append(stages, Stage{st.Name, med(func(s *Size) float64 {
			for _, o := range s.Stages {
				if o.Name == st.Name {
					return o.MeanUs
				}
			}
			return 0
		})})
	}
	var each []Ratios
	if len(runs) > 1 {
		for _, r := range runs {
			each = append(each, Ratios{r.AddedP50Ratio, r.CPURatio, r.TPRatio})
		}
	}
	return Size{
		Runs:          each,
		Stages:        stages,
		Bytes:         runs[0].Bytes,
		Direct:        legMed(func(s *Size) *Leg { return &s.Direct }),
		Bare:          legMed(func(s *Size) *Leg { return &s.Bare }),
		Gateway:       legMed(func(s *Size) *Leg { return &s.Gateway }),
		AddedP50Ratio: med(func(s *Size) float64 { return s.AddedP50Ratio }),
		CPURatio:      med(func(s *Size) float64 { return s.CPURatio }),
		TPRatio:       med(func(s *Size) float64 { return s.TPRatio }),
	}
}

type leg struct {
	name, url, token, tool string
	proc                   *benchkit.Proc // nil for direct
}

func measureSize(ctx context.Context, o options, size int, upURL string, bare, gw *benchkit.Proc) (Size, error) {
	legs := []leg{
		{"direct", upURL, "", "payload", nil},
		{"bare", bare.URL, "", "payload", bare},
		{"gateway", gw.URL, gw.Token, "up__payload", gw},
	}
	res := Size{Bytes: size}
	out := []*Leg{&res.Direct, &res.Bare, &res.Gateway}
	sessions := make([]*mcp.ClientSession, len(legs))
	for i, l := range legs {
		s, err := benchkit.Connect(ctx, l.url, l.token, o.protocol)
		if err != nil {
			return res, fmt.Errorf("connect %s: %w", l.name, err)
		}
		defer s.Close()
		sessions[i] = s
	}
	args := map[string]any{"size": size}
	call := func(s *mcp.ClientSession, tool string) (time.Duration, error) {
		start := time.Now()
		r, err := s.CallTool(ctx, &mcp.CallToolParams{Name: tool, Arguments: args})
		if err == nil && r.IsError {
			err = errors.New("tool error")
		}
		return time.Since(start), err
	}
	for i := 0; i < 300; i++ { // warm up every leg
		for j, l := range legs {
			if _, err := call(sessions[j], l.tool); err != nil {
				return res, fmt.Errorf("%s: %w", l.name, err)
			}
		}
	}
	before, err := gw.Samples(`portcullis_stage_seconds_`)
	if err != nil {
		return res, fmt.Errorf("gateway metrics: %w", err)
	}
	lat := make([][]time.Duration, len(legs))
	for i := 0; i < o.calls; i++ {
		for j, l := range legs {
			d, err := call(sessions[j], l.tool)
			if err != nil {
				return res, fmt.Errorf("%s: %w", l.name, err)
			}
			lat[j] = append(lat[j], d)
		}
	}
	after, err := gw.Samples(`portcullis_stage_seconds_`)
	if err != nil {
		return res, fmt.Errorf("gateway metrics: %w", err)
	}
	res.Stages = stageMeans(before, after, "tools/call")
	for j := range legs {
		out[j].P50us, out[j].P99us = benchkit.Pct(lat[j], 50), benchkit.Pct(lat[j], 99)
		if j > 0 {
			out[j].AddedP50us = out[j].P50us - out[0].P50us
		}
	}
	// Throughput, alternating legs twice to share out drift; each proxy's
	// CPU and (gateway) allocations over its own phases.
	var calls [3]int64
	var cpu [3]time.Duration
	var alloc [3]float64
	for round := 0; round < 2; round++ {
		for j, l := range legs {
			var c0 time.Duration
			var a0 float64
			if l.proc != nil {
				c0, _ = benchkit.CPUTime(l.proc.PID())
				a0, _ = l.proc.Allocated()
			}
			n, err := throughput(ctx, l.url, l.token, l.tool, args, o)
			if err != nil {
				return res, fmt.Errorf("%s throughput: %w", l.name, err)
			}
			calls[j] += n
			if l.proc != nil {
				c1, _ := benchkit.CPUTime(l.proc.PID())
				a1, _ := l.proc.Allocated()
				cpu[j] += c1 - c0
				alloc[j] += a1 - a0
			}
		}
	}
	secs := 2 * o.duration.Seconds()
	for j := range legs {
		out[j].CallsPerS = float64(calls[j]) / secs
		if j > 0 {
			out[j].CPUPerCallUs = float64(cpu[j].Microseconds()) / float64(calls[j])
			out[j].AllocPerCallByte = alloc[j] / float64(calls[j])
		}
	}
	res.AddedP50Ratio = res.Gateway.AddedP50us / res.Bare.AddedP50us
	res.CPURatio = res.Gateway.CPUPerCallUs / res.Bare.CPUPerCallUs
	res.TPRatio = res.Gateway.CallsPerS / res.Bare.CallsPerS
	return res, nil
}

// stageMeans is each stage's mean time per call of method between two
// readings of the stage histograms, sorted by stage name.
func stageMeans(before, after map[string]float64, method string) []Stage {
	var out []Stage
	for key, sum := range after {
		name, ok := strings.CutPrefix(key, `sum{method="`+method+`",stage="`)
		if !ok {
			continue
		}
		name = strings.TrimSuffix(name, `"}`)
		countKey := `count{method="` + method + `",stage="` + name + `"}`
		n := after[countKey] - before[countKey]
		if n <= 0 {
			continue
		}
		out = append(out, Stage{name, (sum - before[key]) / n * 1e6})
	}
	slices.SortFunc(out, func(a, b Stage) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// openSessions opens N agent sessions through the gateway (each opens its
// own session with the upstream) and measures memory and the time to open.
func openSessions(ctx context.Context, gw *benchkit.Proc, upURL string, o options, res *Results) error {
	if o.sessions == 0 {
		return nil
	}
	before, err := benchkit.RSS(gw.PID())
	if err != nil {
		return err
	}
	var open []*mcp.ClientSession
	defer func() {
		for _, s := range open {
			s.Close()
		}
	}()
	var viaT, directT []time.Duration
	for i := 0; i < o.sessions; i++ {
		t0 := time.Now()
		s, err := benchkit.Connect(ctx, gw.URL, gw.Token, o.protocol)
		if err != nil {
			return fmt.Errorf("session %d: %w", i, err)
		}
		viaT = append(viaT, time.Since(t0))
		open = append(open, s)
		if i < 100 {
			t0 = time.Now()
			d, err := benchkit.Connect(ctx, upURL, "", o.protocol)
			if err != nil {
				return err
			}
			directT = append(directT, time.Since(t0))
			d.Close()
		}
	}
	time.Sleep(time.Second)
	if res.SessionsRSSKiB, err = benchkit.RSS(gw.PID()); err != nil {
		return err
	}
	res.PerSessionBytes = float64(res.SessionsRSSKiB-before) * 1024 / float64(o.sessions)
	res.SessionOpenGatewayUs, res.SessionOpenDirectUs = benchkit.Pct(viaT, 50), benchkit.Pct(directT, 50)
	res.UpstreamSessionsOpened = int(benchkit.UpstreamSessions.Load())
	return nil
}

func throughput(ctx context.Context, url, token, tool string, args map[string]any, o options) (int64, error) {
	var n atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, o.workers)
	sessions := make([]*mcp.ClientSession, o.workers)
	for w := range sessions {
		s, err := benchkit.Connect(ctx, url, token, o.protocol)
		if err != nil {
			return 0, err
		}
		sessions[w] = s
	}
	deadline := time.Now().Add(o.duration)
	for _, s := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				if _, err := s.CallTool(ctx, &mcp.CallToolParams{Name: tool, Arguments: args}); err != nil {
					errc <- err
					return
				}
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	for _, s := range sessions {
		s.Close()
	}
	close(errc)
	return n.Load(), <-errc
}

func print(r Results) {
	fmt.Printf("MCP protocol %s on both legs; gateway store.synchronous=%s, audit.sync %s, default screening\n", r.Protocol, r.Sync, r.AuditSync)
	for _, s := range r.Sizes {
		fmt.Printf("\nresult of %d bytes: %d sequential calls per leg (interleaved), then %d concurrent clients; medians of %d runs\n", s.Bytes, r.Calls, r.Workers, r.Runs)
		fmt.Printf("  %-8s %9s %9s %10s %11s %12s %12s\n", "leg", "p50 µs", "p99 µs", "added µs", "calls/s", "CPU µs/call", "alloc B/call")
		for _, x := range []struct {
			n string
			l Leg
		}{{"direct", s.Direct}, {"bare hop", s.Bare}, {"gateway", s.Gateway}} {
			fmt.Printf("  %-8s %9.0f %9.0f %10.0f %11.0f %12.0f %12.0f\n", x.n, x.l.P50us, x.l.P99us, x.l.AddedP50us, x.l.CallsPerS, x.l.CPUPerCallUs, x.l.AllocPerCallByte)
		}
		fmt.Printf("  gateway / bare hop: added p50 %.2fx (aim ≤ 1.5), CPU per call %.2fx (aim ≤ 1.5), throughput %.2fx (aim ≥ 0.85)\n", s.AddedP50Ratio, s.CPURatio, s.TPRatio)
		if len(s.Runs) > 0 {
			var p50, cpu, tp []string
			for _, r := range s.Runs {
				p50 = append(p50, fmt.Sprintf("%.2f", r.AddedP50))
				cpu = append(cpu, fmt.Sprintf("%.2f", r.CPU))
				tp = append(tp, fmt.Sprintf("%.2f", r.Throughput))
			}
			fmt.Printf("  each run: added p50 %s, CPU per call %s, throughput %s\n", strings.Join(p50, " "), strings.Join(cpu, " "), strings.Join(tp, " "))
		}
		if len(s.Stages) > 0 {
			fmt.Printf("  gateway stages of tools/call, mean µs over the sequential calls (relay includes the upstream's answer):\n   ")
			total := 0.0
			for _, st := range s.Stages {
				fmt.Printf(" %s %.0f,", st.Name, st.MeanUs)
				total += st.MeanUs
			}
			fmt.Printf(" together %.0f\n", total)
		}
	}
	fmt.Printf("\naudit: %.1f events per fsync on average over the run\n", r.EventsPerSync)
	fmt.Printf("machine: %.1f%% of its CPU time went to other tenants (steal) during the measurements\n", 100*r.StealShare)
	fmt.Printf("\ngateway memory\n  idle             %6d KiB RSS\n  %d sessions   %6d KiB RSS   (%.0f bytes per session, with its upstream session)\n",
		r.IdleRSSKiB, r.Sessions, r.SessionsRSSKiB, r.PerSessionBytes)
	fmt.Printf("opening a session (initialize): direct %.0f µs, through the gateway %.0f µs (p50; it opens the upstream session)\n", r.SessionOpenDirectUs, r.SessionOpenGatewayUs)
}
