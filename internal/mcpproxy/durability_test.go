package mcpproxy

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/store"
)

var (
	errIsError    = errors.New("the call's result is an error")
	errSyncFailed = errors.New("sync failed (test)")
)

// heldSyncs commits through the real recorder and hands out receipts that
// become durable only when released: a disk that has not synced yet.
type heldSyncs struct {
	Recorder
	mu      sync.Mutex
	settles []func(error)
}

func (h *heldSyncs) Commit(ctx context.Context, e *audit.Event) (*audit.Receipt, error) {
	if _, err := h.Recorder.Commit(ctx, e); err != nil {
		return nil, err
	}
	rc, settle := audit.HeldReceipt()
	h.mu.Lock()
	h.settles = append(h.settles, settle)
	h.mu.Unlock()
	return rc, nil
}

func (h *heldSyncs) release(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, s := range h.settles {
		s(err)
	}
	h.settles = nil
}

// TestAnswerWaitsForTheDiskUnlessBackground: with audit.sync before_answer
// a call's answer waits until its decision is on disk, and a failed sync
// withholds it; with background the answer does not wait.
func TestAnswerWaitsForTheDiskUnlessBackground(t *testing.T) {
	t.Parallel()
	for _, background := range []bool{false, true} {
		held := &heldSyncs{}
		r := newRigWith(t, "", nil, map[string]*mcp.Server{"up": upstreamWith("echo")}, func(o *Options, _ *store.DB) {
			held.Recorder = o.Recorder
			o.Recorder = held
			o.SyncBackground = background
		})
		s := r.agent(nil)
		// Before the agent and the rig stop (cleanups run last first): a
		// call still waiting for the disk when the test fails must not hold
		// them up.
		t.Cleanup(func() { held.release(nil) })
		call := func() chan error {
			done := make(chan error, 1)
			go func() {
				res, err := s.CallTool(context.Background(), &mcp.CallToolParams{Name: "up__echo"})
				if err == nil && res.IsError {
					err = errIsError
				}
				done <- err
			}()
			return done
		}
		done := call()
		if background {
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("background: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("background: the answer waited for the disk")
			}
			continue
		}
		select {
		case err := <-done:
			t.Fatalf("before_answer: answered (%v) before the decision was on disk", err)
		case <-time.After(300 * time.Millisecond):
		}
		held.release(nil)
		if err := <-done; err != nil {
			t.Fatalf("before_answer, synced: %v", err)
		}
		// A sync that fails withholds the answer.
		done = call()
		deadline := time.Now().Add(10 * time.Second)
		for {
			held.mu.Lock()
			n := len(held.settles)
			held.mu.Unlock()
			if n > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the second call was never committed")
			}
			time.Sleep(5 * time.Millisecond)
		}
		held.release(errSyncFailed)
		if err := <-done; err == nil {
			t.Fatal("before_answer: answered although the sync failed")
		}
	}
}
