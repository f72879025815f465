package mcpproxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/identity"
	"github.com/portcullis-dev/portcullis/internal/reason"
)

// gatedUpstream has "gate", which waits for a value on open (or the end of
// the call), "slow", which takes 20 ms, and "quick".
func gatedUpstream(open chan struct{}, started *atomic.Int32) *mcp.Server {
	s := mcp.NewServer(&mcp.Implementation{Name: "gated"}, nil)
	text := &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "ok"}}}
	s.AddTool(&mcp.Tool{Name: "gate", InputSchema: map[string]any{"type": "object"}}, func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		started.Add(1)
		select {
		case <-open:
			return text, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
	s.AddTool(&mcp.Tool{Name: "slow", InputSchema: map[string]any{"type": "object"}}, func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		time.Sleep(20 * time.Millisecond)
		return text, nil
	})
	s.AddTool(&mcp.Tool{Name: "quick", InputSchema: map[string]any{"type": "object"}}, func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return text, nil
	})
	return s
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestBurstLargerThanSlotsIsServed: 40 calls from four agents at once to
// an upstream with two slots all succeed within the queue timeout.
func TestBurstLargerThanSlotsIsServed(t *testing.T) {
	t.Parallel()
	var started atomic.Int32
	r := newRig(t, "", func(l *config.Limits) { l.MaxCallsPerUpstream = 2 },
		map[string]*mcp.Server{"up": gatedUpstream(nil, &started)})
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for a := range 4 {
		s := r.agentAs(&identity.Principal{Agent: fmt.Sprint("agent-", a)}, nil)
		for range 10 {
			wg.Go(func() {
				res, err := s.CallTool(context.Background(), &mcp.CallToolParams{Name: "up__slow"})
				if err == nil && res.IsError {
					err = errors.New("tool error")
				}
				if err != nil {
					errs <- err
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if used, _, queued, _ := r.p.upstream("up").Load(); used != 0 || queued != 0 {
		t.Errorf("after the burst: %d in use, %d queued", used, queued)
	}
}

// TestCallPastTheQueueTimeoutIsShed: the call that finds no slot in time is
// refused as upstream_busy with a retry hint, and the refusal is audited
// after the allowed decision.
func TestCallPastTheQueueTimeoutIsShed(t *testing.T) {
	t.Parallel()
	var started atomic.Int32
	open := make(chan struct{})
	defer close(open)
	r := newRig(t, "", func(l *config.Limits) {
		l.MaxCallsPerUpstream = 1
		l.QueueTimeout = config.Duration(100 * time.Millisecond)
	}, map[string]*mcp.Server{"up": gatedUpstream(open, &started)})
	s := r.agent(nil)
	go s.CallTool(context.Background(), &mcp.CallToolParams{Name: "up__gate"})
	waitFor(t, "the first call to start", func() bool { return started.Load() == 1 })
	_, err := s.CallTool(context.Background(), &mcp.CallToolParams{Name: "up__quick"})
	var we *jsonrpc.Error
	if !errors.As(err, &we) || we.Code != CodeUnavailable {
		t.Fatalf("queued call: %v, want a JSON-RPC error %d", err, CodeUnavailable)
	}
	var data struct {
		Reason       reason.Code `json:"reason"`
		RequestID    string      `json:"request_id"`
		RetryAfterMs int64       `json:"retry_after_ms"`
	}
	if err := json.Unmarshal(we.Data, &data); err != nil || data.Reason != reason.UpstreamBusy || data.RetryAfterMs < 100 || data.RequestID == "" {
		t.Fatalf("refusal data %s (%v)", we.Data, err)
	}
	waitFor(t, "the shed call's audit record", func() bool {
		for _, e := range r.events() {
			if e.RequestID == data.RequestID && e.Type == audit.TypeUpstream && e.Code == reason.UpstreamBusy && e.Outcome == audit.OutcomeError {
				return true
			}
		}
		return false
	})
}

// TestQueuedCallCancelledByTheAgentLeavesTheQueue: notifications/cancelled
// (here: the client's context) takes a waiting call out of the queue.
func TestQueuedCallCancelledByTheAgentLeavesTheQueue(t *testing.T) {
	t.Parallel()
	var started atomic.Int32
	open := make(chan struct{})
	defer close(open)
	r := newRig(t, "", func(l *config.Limits) { l.MaxCallsPerUpstream = 1 },
		map[string]*mcp.Server{"up": gatedUpstream(open, &started)})
	s := r.agent(nil)
	go s.CallTool(context.Background(), &mcp.CallToolParams{Name: "up__gate"})
	waitFor(t, "the first call to start", func() bool { return started.Load() == 1 })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		_, err := s.CallTool(ctx, &mcp.CallToolParams{Name: "up__quick"})
		done <- err
	}()
	u := r.p.upstream("up")
	waitFor(t, "the second call to queue", func() bool { _, _, q, _ := u.Load(); return q == 1 })
	cancel()
	<-done
	waitFor(t, "the cancelled call to leave the queue", func() bool { _, _, q, _ := u.Load(); return q == 0 })
}

// TestGreedyAgentCannotKeepAnotherFromBeingServed: one agent fills both
// slots and queues eight more calls; another agent's call is served as
// soon as one slot frees, not after the greedy agent's queue.
func TestGreedyAgentCannotKeepAnotherFromBeingServed(t *testing.T) {
	t.Parallel()
	var started atomic.Int32
	open := make(chan struct{})
	defer close(open)
	r := newRig(t, "", func(l *config.Limits) { l.MaxCallsPerUpstream = 2 },
		map[string]*mcp.Server{"up": gatedUpstream(open, &started)})
	u := r.p.upstream("up")
	greedy := r.agentAs(&identity.Principal{Agent: "greedy"}, nil)
	for range 10 {
		go greedy.CallTool(context.Background(), &mcp.CallToolParams{Name: "up__gate"})
	}
	waitFor(t, "the greedy agent to fill the slots and queue", func() bool { _, _, q, _ := u.Load(); return started.Load() == 2 && q == 8 })
	other := r.agentAs(&identity.Principal{Agent: "other"}, nil)
	done := make(chan error, 1)
	go func() {
		_, err := other.CallTool(context.Background(), &mcp.CallToolParams{Name: "up__quick"})
		done <- err
	}()
	waitFor(t, "the other agent's call to queue", func() bool { _, _, q, _ := u.Load(); return q == 9 })
	open <- struct{}{} // one greedy call ends
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("the other agent's call: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the other agent's call waited behind the greedy agent's queue")
	}
}

// TestContainmentDuringTheQueueWaitHoldsTheCallBack: a call that was
// allowed and then waited for a slot is refused, not relayed, when the
// response to an alert contains its agent while it waits; the refusal is
// a decision event of its own.
func TestContainmentDuringTheQueueWaitHoldsTheCallBack(t *testing.T) {
	t.Parallel()
	var started atomic.Int32
	open := make(chan struct{})
	r := newRig(t, "", func(l *config.Limits) { l.MaxCallsPerUpstream = 1 },
		map[string]*mcp.Server{"up": gatedUpstream(open, &started)})
	s := r.agent(nil)
	first := make(chan error, 1)
	go func() {
		_, err := s.CallTool(context.Background(), &mcp.CallToolParams{Name: "up__gate"})
		first <- err
	}()
	waitFor(t, "the first call to start", func() bool { return started.Load() == 1 })
	done := make(chan error, 1)
	go func() {
		_, err := s.CallTool(context.Background(), &mcp.CallToolParams{Name: "up__gate"})
		done <- err
	}()
	u := r.p.upstream("up")
	waitFor(t, "the second call to queue", func() bool { _, _, q, _ := u.Load(); return q == 1 })
	r.p.Contain("", "agent", ReadOnly)
	close(open)
	if err := <-first; err != nil {
		t.Fatalf("the call relayed before the containment: %v", err)
	}
	err := <-done
	var we *jsonrpc.Error
	if !errors.As(err, &we) || !strings.Contains(string(we.Data), string(reason.Contained)) {
		t.Fatalf("the queued call after the containment: %v, want a refusal for %s", err, reason.Contained)
	}
	if n := started.Load(); n != 1 {
		t.Errorf("the upstream ran %d calls, want only the one relayed before the containment", n)
	}
	waitFor(t, "the refusal's decision event", func() bool {
		for _, e := range r.events() {
			if e.Type == audit.TypeDecision && e.Code == reason.Contained && e.Outcome == audit.OutcomeDeny {
				return true
			}
		}
		return false
	})
}
