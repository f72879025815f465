package gateway

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/identity"
	"github.com/portcullis-dev/portcullis/internal/mcpproxy"
	"github.com/portcullis-dev/portcullis/internal/policy"
	"github.com/portcullis-dev/portcullis/internal/store"
)

// The in-process pipeline: what the gateway adds to each call, without the
// network. scripts/bench.sh runs these with the round-trip harness.

// BenchmarkDecide is one Cedar decision with the demo policy.
func BenchmarkDecide(b *testing.B) {
	set, err := policy.Compile([]policy.Source{{Name: "p", Data: []byte(demoPolicy)}})
	if err != nil {
		b.Fatal(err)
	}
	e := policy.NewEngine(set)
	args, _ := policy.Arguments([]byte(`{"to":"bob@example.com","body":"hello"}`))
	in := &policy.Input{
		Principal: &identity.Principal{Agent: "mailer", Roles: []string{"readers", "mailers"}},
		Action:    policy.ActionCallTool,
		Target:    policy.Target{Kind: policy.KindTool, ID: "demo__send_message", Upstream: "demo"},
		Arguments: args,
	}
	b.ReportAllocs()
	for b.Loop() {
		if !e.Decide(in).Allow {
			b.Fatal("denied")
		}
	}
}

// BenchmarkRecordParallel is durable event writes from many concurrent
// callers (group commit: one fsync per batch).
func BenchmarkRecordParallel(b *testing.B) {
	st, err := store.Open(filepath.Join(b.TempDir(), "b.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	r := audit.NewRecorder(st, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	b.SetParallelism(16)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			e := audit.Decision(audit.TypeDecision, time.Now(), audit.Subject{Agent: "agent", RequestID: "REQ"}, "tools/call")
			e.Target, e.PolicyVersion = "demo__read_file", "sha256:x"
			if err := r.Record(context.Background(), e); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	cancel()
	<-done
}

// BenchmarkCall compares a tools/call straight to an in-process upstream
// with the same call through the proxy (policy + durable audit), both over
// in-memory transports; the difference is the gateway's pipeline.
func BenchmarkCall(b *testing.B) {
	upstream := func() *mcp.Server {
		s := mcp.NewServer(&mcp.Implementation{Name: "u"}, nil)
		s.AddTool(&mcp.Tool{Name: "echo", InputSchema: map[string]any{"type": "object"}}, func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: string(req.Params.Arguments)}}}, nil
		})
		return s
	}
	connect := func(b *testing.B, srv *mcp.Server) *mcp.ClientSession {
		ct, st := mcp.NewInMemoryTransports()
		if _, err := srv.Connect(context.Background(), st, nil); err != nil {
			b.Fatal(err)
		}
		s, err := mcp.NewClient(&mcp.Implementation{Name: "bench"}, nil).Connect(context.Background(), ct, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() })
		return s
	}
	args := map[string]any{"message": "hello"}
	b.Run("direct", func(b *testing.B) {
		s := connect(b, upstream())
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.CallTool(context.Background(), &mcp.CallToolParams{Name: "echo", Arguments: args}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("gateway", func(b *testing.B) {
		set, _ := policy.Compile([]policy.Source{{Name: "p", Data: []byte(`permit (principal, action == Action::"call_tool", resource in Upstream::"u");`)}})
		st, err := store.Open(filepath.Join(b.TempDir(), "b.db"))
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		log := slog.New(slog.NewTextHandler(io.Discard, nil))
		rec := audit.NewRecorder(st, log)
		c, _ := config.Parse([]byte("version: 1\n"), ".")
		pr := &identity.Principal{Agent: "agent"}
		p := mcpproxy.New(mcpproxy.Options{Decider: policy.NewEngine(set), Recorder: rec, Limits: c.Limits, Log: log})
		srv := upstream()
		p.AddUpstream(config.Upstream{Name: "u"}, mcpproxy.InProcessDialer(func() *mcp.Server { return srv }, c.Limits))
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go rec.Run(ctx)
		go p.Run(ctx)
		if err := p.WaitReady(ctx); err != nil {
			b.Fatal(err)
		}
		agentIn, proxyOut := io.Pipe()
		proxyIn, agentOut := io.Pipe()
		go p.ServeStdio(ctx, proxyIn, proxyOut, func(context.Context) (*identity.Principal, error) { return pr, nil })
		s, err := mcp.NewClient(&mcp.Implementation{Name: "bench"}, nil).Connect(ctx, &mcp.IOTransport{Reader: agentIn, Writer: agentOut}, nil)
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.CallTool(context.Background(), &mcp.CallToolParams{Name: "u__echo", Arguments: args}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
