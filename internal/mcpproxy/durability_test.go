//lint:file-ignore SA1019 sampling is deprecated as of MCP 2026-07-28, but its requests must still wait for the disk for older peers.
package mcpproxy

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/policy"
	"github.com/portcullis-dev/portcullis/internal/reason"
	"github.com/portcullis-dev/portcullis/internal/store"
	"github.com/portcullis-dev/portcullis/internal/transport"
)

var errSyncFailed = errors.New("sync failed (test)")

// heldSyncs writes through the real recorder but holds back durability:
// Commit's receipts, and Record's return, wait until release (a disk that
// has not synced yet).
type heldSyncs struct {
	Recorder
	commits atomic.Int64
	mu      sync.Mutex
	settles []func(error)
	synced  chan struct{} // closed by release: Record returns
	err     error         // the released sync's error
}

func newHeldSyncs() *heldSyncs { return &heldSyncs{synced: make(chan struct{})} }

func (h *heldSyncs) Commit(ctx context.Context, e *audit.Event) (*audit.Receipt, error) {
	if _, err := h.Recorder.Commit(ctx, e); err != nil {
		return nil, err
	}
	h.commits.Add(1)
	rc, settle := audit.HeldReceipt()
	h.mu.Lock()
	defer h.mu.Unlock()
	select {
	case <-h.synced:
		settle(h.err)
	default:
		h.settles = append(h.settles, settle)
	}
	return rc, nil
}

func (h *heldSyncs) Record(ctx context.Context, e *audit.Event) error {
	if err := h.Recorder.Record(ctx, e); err != nil {
		return err
	}
	select {
	case <-h.synced:
		return h.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// release makes everything held, and everything from now on, durable (or
// failed with err).
func (h *heldSyncs) release(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	select {
	case <-h.synced:
		return
	default:
	}
	h.err = err
	for _, s := range h.settles {
		s(err)
	}
	h.settles = nil
	close(h.synced)
}

// heldRig is a rig whose recorder is h, with audit.sync background or
// before_answer.
func heldRig(t *testing.T, background bool, limits func(*config.Limits), ups map[string]*mcp.Server) (*rig, *heldSyncs) {
	t.Helper()
	h := newHeldSyncs()
	r := newRigWith(t, "", limits, ups, func(o *Options, _ *store.DB) {
		h.Recorder = o.Recorder
		o.Recorder = h
		o.SyncBackground = background
	})
	return r, h
}

// settleOnCleanup releases h before the agent and the rig stop (cleanups
// run last first): a call still waiting for the disk when a test fails
// must not hold them up.
func settleOnCleanup(t *testing.T, h *heldSyncs) { t.Cleanup(func() { h.release(nil) }) }

// returnsWithin runs fn and reports whether it returned within d (it goes
// on either way; its result arrives on the channel).
func returnsWithin(d time.Duration, fn func() error) (chan error, bool) {
	done := make(chan error, 1)
	go func() { done <- fn() }()
	select {
	case err := <-done:
		done <- err
		return done, true
	case <-time.After(d):
		return done, false
	}
}

// TestAnswerWaitsForTheDiskUnlessBackground: with audit.sync before_answer
// a call's answer waits until its decision is on disk, and a failed sync
// withholds it (audit_unavailable); with background the answer does not
// wait, but the decision is committed before the upstream sees the call.
func TestAnswerWaitsForTheDiskUnlessBackground(t *testing.T) {
	t.Parallel()
	for _, background := range []bool{false, true} {
		up := mcp.NewServer(&mcp.Implementation{Name: "upstream"}, nil)
		var h *heldSyncs
		var committedFirst atomic.Bool
		up.AddTool(&mcp.Tool{Name: "echo", InputSchema: map[string]any{"type": "object"}}, func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			committedFirst.Store(h.commits.Load() > 0)
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "done"}}}, nil
		})
		r, held := heldRig(t, background, nil, map[string]*mcp.Server{"up": up})
		h = held
		s := r.agent(nil)
		settleOnCleanup(t, h)
		call := func() error {
			res, err := s.CallTool(context.Background(), &mcp.CallToolParams{Name: "up__echo"})
			if err == nil && res.IsError {
				err = errors.New("the call's result is an error")
			}
			return err
		}
		done, returned := returnsWithin(300*time.Millisecond, call)
		if background {
			if !returned {
				t.Fatal("background: the answer waited for the disk")
			}
			if err := <-done; err != nil {
				t.Fatalf("background: %v", err)
			}
			if !committedFirst.Load() {
				t.Fatal("background: the upstream saw the call before its decision was committed")
			}
			continue
		}
		if returned {
			t.Fatalf("before_answer: answered (%v) before the decision was on disk", <-done)
		}
		if !committedFirst.Load() {
			t.Fatal("before_answer: the upstream saw the call before its decision was committed")
		}
		// A sync that fails withholds the answer: the agent is told the
		// log is unavailable.
		h.release(errSyncFailed)
		if err := <-done; err == nil || !strings.Contains(err.Error(), string(reason.AuditUnavailable)) {
			t.Fatalf("before_answer: a failed sync answered %v, want %s", err, reason.AuditUnavailable)
		}
	}
}

// TestDenialsWaitForTheDiskInEveryMode: a refused call (here, arguments
// over the limit) is on disk before the agent hears of it, background or
// not.
func TestDenialsWaitForTheDiskInEveryMode(t *testing.T) {
	t.Parallel()
	for _, background := range []bool{false, true} {
		r, h := heldRig(t, background, func(l *config.Limits) { l.MaxArgumentBytes = 16 }, map[string]*mcp.Server{"up": upstreamWith("echo")})
		s := r.agent(nil)
		settleOnCleanup(t, h)
		done, returned := returnsWithin(300*time.Millisecond, func() error {
			_, err := s.CallTool(context.Background(), &mcp.CallToolParams{Name: "up__echo", Arguments: map[string]any{"text": strings.Repeat("x", 64)}})
			return err
		})
		if returned {
			t.Fatalf("background=%v: the agent heard of a denial (%v) before it was on disk", background, <-done)
		}
		h.release(nil)
		if err := <-done; err == nil || !strings.Contains(err.Error(), string(reason.ArgumentsTooLarge)) {
			t.Fatalf("background=%v: %v, want %s", background, err, reason.ArgumentsTooLarge)
		}
	}
}

// TestServerRequestsWaitForTheDiskUnlessBackground: an upstream's request
// to the agent (sampling, permitted) reaches the agent only once its
// decision is on disk with before_answer; with background at once.
func TestServerRequestsWaitForTheDiskUnlessBackground(t *testing.T) {
	t.Parallel()
	set, err := policy.Compile([]policy.Source{{Name: "t.cedar", Data: []byte(permitAll + `
permit (principal == Upstream::"up", action == Action::"sampling", resource);`)}})
	if err != nil {
		t.Fatal(err)
	}
	for _, background := range []bool{false, true} {
		h := newHeldSyncs()
		r := newRigDialers(t, "", nil, map[string]func(config.Limits) transport.Dialer{"up": func(config.Limits) transport.Dialer {
			return func(ctx context.Context) (transport.Conn, error) {
				return transport.Pipe(ctx, misbehavingServer(), 1<<20, 64, nil)
			}
		}}, func(o *Options, _ *store.DB) {
			o.Decider = policy.NewEngine(set)
			h.Recorder = o.Recorder
			o.Recorder = h
			o.SyncBackground = background
		})
		asked := make(chan struct{}, 1)
		s := r.agent(&mcp.ClientOptions{CreateMessageHandler: func(context.Context, *mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
			asked <- struct{}{}
			return &mcp.CreateMessageResult{Model: "m", Content: &mcp.TextContent{Text: "sampled"}}, nil
		}})
		settleOnCleanup(t, h)
		done := make(chan error, 1)
		go func() {
			_, err := s.CallTool(context.Background(), &mcp.CallToolParams{Name: "up__ask"})
			done <- err
		}()
		select {
		case <-asked:
			if !background {
				t.Fatal("before_answer: the agent was asked before the server request's decision was on disk")
			}
		case <-time.After(300 * time.Millisecond):
			if background {
				t.Fatal("background: the server's request waited for the disk")
			}
			h.release(nil)
			<-asked
		}
		h.release(nil)
		if err := <-done; err != nil {
			t.Fatalf("background=%v: %v", background, err)
		}
	}
}

// TestRefusalsAfterTheDecisionWaitForTheDisk: a call allowed and relayed
// whose result is then refused (over the size limit) is answered, with
// the refusal, only once its decision is on disk (before_answer).
func TestRefusalsAfterTheDecisionWaitForTheDisk(t *testing.T) {
	t.Parallel()
	up := mcp.NewServer(&mcp.Implementation{Name: "upstream"}, nil)
	up.AddTool(&mcp.Tool{Name: "big", InputSchema: map[string]any{"type": "object"}}, func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: strings.Repeat("b", 64<<10)}}}, nil
	})
	r, h := heldRig(t, false, func(l *config.Limits) { l.MaxResultBytes = 1 << 10 }, map[string]*mcp.Server{"up": up})
	s := r.agent(nil)
	settleOnCleanup(t, h)
	done, returned := returnsWithin(300*time.Millisecond, func() error {
		_, err := s.CallTool(context.Background(), &mcp.CallToolParams{Name: "up__big"})
		return err
	})
	if returned {
		t.Fatalf("the refusal (%v) came before the decision was on disk", <-done)
	}
	h.release(nil)
	if err := <-done; err == nil || !strings.Contains(err.Error(), string(reason.ResultTooLarge)) {
		t.Fatalf("%v, want %s", err, reason.ResultTooLarge)
	}
}
