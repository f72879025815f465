// Command fleet measures Portcullis on PostgreSQL against SQLite, with one
// and three replicas, in one run on one machine: added p50 latency of a
// call against the upstream direct, and calls per second with 8 clients
// (spread over the replicas); then how long a revocation written to the
// shared store takes to stop an agent's calls on another replica (p50,
// p99). The PostgreSQL server is started here (internal/pgtest) with its
// durable defaults (fsync, synchronous_commit on), as SQLite runs with
// synchronous=FULL.
//
//	go run ./bench/fleet -portcullis bench/results/portcullis
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/portcullis-dev/portcullis/bench/internal/benchkit"
	"github.com/portcullis-dev/portcullis/internal/pgtest"
	"github.com/portcullis-dev/portcullis/internal/store"
)

type options struct {
	binary      string
	calls       int
	workers     int
	duration    time.Duration
	revocations int
}

const protocol = "2025-11-25"

func main() {
	var o options
	flag.StringVar(&o.binary, "portcullis", "./portcullis", "portcullis binary")
	flag.IntVar(&o.calls, "calls", 1000, "sequential calls per setup")
	flag.IntVar(&o.workers, "workers", 8, "concurrent clients in the throughput phase")
	flag.DurationVar(&o.duration, "duration", 5*time.Second, "length of each throughput phase")
	flag.IntVar(&o.revocations, "revocations", 40, "revocations timed")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "fleet:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pg, err := pgtest.Start(pgtest.Options{Durable: true})
	if err != nil {
		return err
	}
	defer pg.Stop()
	upURL, err := benchkit.StartUpstream(ctx)
	if err != nil {
		return err
	}
	args := map[string]any{"size": 64}
	direct, err := sequential(ctx, []string{upURL}, "", "payload", args, o.calls)
	if err != nil {
		return err
	}
	fmt.Printf("%d sequential calls per setup, then %d clients for %v; 64-byte results; MCP %s\n", o.calls, o.workers, o.duration, protocol)
	fmt.Printf("  %-22s %9s %10s %10s\n", "setup", "p50 µs", "added µs", "calls/s")
	fmt.Printf("  %-22s %9.0f %10s %10s\n", "direct", direct, "", "")
	var fleet []*benchkit.Proc
	for _, setup := range []struct {
		name     string
		replicas int
		postgres bool
	}{{"sqlite, 1 gateway", 1, false}, {"postgres, 1 gateway", 1, true}, {"postgres, 3 gateways", 3, true}} {
		var dsn string
		if setup.postgres {
			if dsn, err = pg.CreateDatabase(fmt.Sprintf("bench_%d", setup.replicas)); err != nil {
				return err
			}
		}
		gws, err := startFleet(ctx, o, upURL, dsn, setup.replicas)
		if err != nil {
			return err
		}
		var urls []string
		for _, g := range gws {
			urls = append(urls, g.URL)
		}
		p50, err := sequential(ctx, urls[:1], gws[0].Token, "up__payload", args, o.calls)
		if err != nil {
			return err
		}
		n, err := throughput(ctx, urls, gws[0].Token, args, o)
		if err != nil {
			return err
		}
		fmt.Printf("  %-22s %9.0f %10.0f %10.0f\n", setup.name, p50, p50-direct, float64(n)/o.duration.Seconds())
		if setup.replicas == 3 {
			fleet = gws
			if err := revocations(ctx, o, fleet, dsn); err != nil {
				return err
			}
		}
		for _, g := range gws {
			g.Stop()
		}
	}
	return nil
}

// startFleet starts n gateways on one store (dsn; "" for SQLite, n=1),
// the later ones with the first one's keys.
func startFleet(ctx context.Context, o options, upURL, dsn string, n int) ([]*benchkit.Proc, error) {
	var gws []*benchkit.Proc
	for i := 0; i < n; i++ {
		g := benchkit.Gateway{Binary: o.binary, UpstreamURL: upURL, Protocol: protocol, MaxSessions: 200, Sync: "full", AuditSync: "before_answer",
			Agents: []string{"bench", "victim"}, Postgres: dsn}
		if i > 0 {
			g.Keys = gws[0].Dir + "/keys"
		}
		p, err := benchkit.StartGateway(ctx, g)
		if err != nil {
			for _, g := range gws {
				g.Stop()
			}
			return nil, err
		}
		if i > 0 {
			p.Token, p.Tokens = gws[0].Token, gws[0].Tokens // tokens of the fleet's key
		}
		gws = append(gws, p)
	}
	return gws, nil
}

// sequential makes calls one after another and returns the p50 in µs.
func sequential(ctx context.Context, urls []string, token, tool string, args map[string]any, calls int) (float64, error) {
	s, err := benchkit.Connect(ctx, urls[0], token, protocol)
	if err != nil {
		return 0, err
	}
	defer s.Close()
	var ds []time.Duration
	for i := 0; i < calls; i++ {
		t0 := time.Now()
		if _, err := s.CallTool(ctx, &mcp.CallToolParams{Name: tool, Arguments: args}); err != nil {
			return 0, err
		}
		ds = append(ds, time.Since(t0))
	}
	return benchkit.Pct(ds, 50), nil
}

// throughput runs o.workers clients spread over urls for o.duration.
func throughput(ctx context.Context, urls []string, token string, args map[string]any, o options) (int64, error) {
	var n atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, o.workers)
	deadline := time.Now().Add(o.duration)
	for w := 0; w < o.workers; w++ {
		s, err := benchkit.Connect(ctx, urls[w%len(urls)], token, protocol)
		if err != nil {
			return 0, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer s.Close()
			for time.Now().Before(deadline) {
				if _, err := s.CallTool(ctx, &mcp.CallToolParams{Name: "up__payload", Arguments: args}); err != nil {
					errc <- err
					return
				}
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	close(errc)
	return n.Load(), <-errc
}

// revocations times, o.revocations times, how long after a revocation of
// the agent "victim" is written to the shared store its calls on replica 3
// are refused (a call every 2 ms); each revocation is lifted afterwards.
func revocations(ctx context.Context, o options, gws []*benchkit.Proc, dsn string) error {
	st, err := store.OpenPostgres(ctx, dsn, store.Options{})
	if err != nil {
		return err
	}
	defer st.Close()
	token := gws[0].Tokens["victim"]
	var ds []time.Duration
	for i := 0; i < o.revocations; i++ {
		s, err := benchkit.Connect(ctx, gws[2].URL, token, protocol)
		if err != nil {
			return err
		}
		if err := st.Revoke(ctx, store.RevokeAgent, "victim", "bench", "propagation"); err != nil {
			return err
		}
		t0 := time.Now()
		for {
			if _, err := s.CallTool(ctx, &mcp.CallToolParams{Name: "up__payload", Arguments: map[string]any{"size": 8}}); err != nil {
				break
			}
			if time.Since(t0) > 10*time.Second {
				return fmt.Errorf("revocation %d not in force after 10 s", i)
			}
			time.Sleep(2 * time.Millisecond)
		}
		ds = append(ds, time.Since(t0))
		s.Close()
		if _, err := st.Unrevoke(ctx, store.RevokeAgent, "victim"); err != nil {
			return err
		}
		time.Sleep(600 * time.Millisecond) // every replica reads the lifted revocation
	}
	slices.Sort(ds)
	fmt.Printf("revocation written to the store to refusal on replica 3 (%d revocations): p50 %v, p99 %v, max %v\n",
		len(ds), time.Duration(benchkit.Pct(ds, 50)*1000).Round(time.Millisecond), time.Duration(benchkit.Pct(ds, 99)*1000).Round(time.Millisecond), ds[len(ds)-1].Round(time.Millisecond))
	return nil
}
