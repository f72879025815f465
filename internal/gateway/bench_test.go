package gateway

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/identity"
	"github.com/portcullis-dev/portcullis/internal/mcpproxy"
	"github.com/portcullis-dev/portcullis/internal/policy"
	"github.com/portcullis-dev/portcullis/internal/store"
	"github.com/portcullis-dev/portcullis/internal/token"
)

// The in-process pipeline: what the gateway adds to each call, without the
// network. scripts/bench.sh runs these with the round-trip harness.

func benchKey(b *testing.B) (*token.SigningKey, *token.Verifier, string) {
	k, err := token.LoadOrCreateKey(filepath.Join(b.TempDir(), "k.pem"))
	if err != nil {
		b.Fatal(err)
	}
	iss, _ := token.NewIssuer(k, "pc", "gw", time.Hour, nil)
	raw, _, _ := iss.Issue("agent", 30*time.Minute)
	return k, token.NewVerifier(k, "pc", "gw", time.Hour, nil), raw
}

// BenchmarkAuthenticate is per-request authentication of a token already
// seen (the common case: an agent reuses its token for many calls).
func BenchmarkAuthenticate(b *testing.B) {
	_, v, raw := benchKey(b)
	a := NewTokenAuthenticator(v, []config.Agent{{Name: "agent", Roles: []string{"r"}}}, nil)
	r, _ := http.NewRequest("POST", "/mcp", nil)
	r.Header.Set("Authorization", "Bearer "+raw)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.Authenticate(r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyToken is a first sight of a token: signature and claims.
func BenchmarkVerifyToken(b *testing.B) {
	_, v, raw := benchKey(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(raw); err != nil {
			b.Fatal(err)
		}
	}
}

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

// BenchmarkAuthenticateTaskDPoP is per-request authentication of a
// sender-constrained task token already seen: the cached token check plus
// a fresh DPoP proof (ES256 signature, claims, replay memory) per request.
// The proofs are made outside the timer.
func BenchmarkAuthenticateTaskDPoP(b *testing.B) {
	k, err := token.LoadOrCreateKey(filepath.Join(b.TempDir(), "k.pem"))
	if err != nil {
		b.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	jkt, _ := token.Thumbprint(key.Public())
	iss, _ := token.NewTypedIssuer(k, token.TypTask, "pc", "gw", time.Hour, nil)
	raw, _, err := iss.IssueTask(token.Task{Agent: "agent", Tools: []string{"u__t"}, Budget: 1 << 30, JKT: jkt}, 30*time.Minute)
	if err != nil {
		b.Fatal(err)
	}
	a := NewTokenAuthenticator(token.NewVerifier(k, "pc", "gw", time.Hour, nil), []config.Agent{{Name: "agent"}}, nil)
	a.tasks = token.NewTypedVerifier(k, token.TypTask, "pc", "gw", time.Hour, nil)
	a.dpop = token.NewDPoPVerifier(nil)
	const n = 4096
	reqs := make([]*http.Request, n)
	for i := range reqs {
		p, _ := token.Proof(key, jose.ES256, "POST", "http://gw/mcp", raw, fmt.Sprint("j", i, "-", time.Now().UnixNano()), time.Now())
		r, _ := http.NewRequest("POST", "http://gw/mcp", nil)
		r.Header.Set("Authorization", "DPoP "+raw)
		r.Header.Set("DPoP", p)
		reqs[i] = r
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i == n {
			b.StopTimer()
			a.dpop = token.NewDPoPVerifier(nil) // fresh replay memory for reused proofs
			i = 0
			b.StartTimer()
		}
		if _, err := a.Authenticate(reqs[i]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
