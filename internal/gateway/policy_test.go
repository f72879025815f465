package gateway

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/portcullis-dev/portcullis/internal/audit"
)

func TestPolicyHotReloadIsAtomicAndKeepsTheLastGoodBundle(t *testing.T) {
	t.Parallel()
	h := startGateway(t, strings.Replace(demoConfig, "policy:\n  paths: [DIR/policy.cedar]", "policy:\n  paths: [DIR/policy.cedar]\n  reload_interval: 100ms", 1),
		map[string]string{"policy.cedar": demoPolicy})
	s := h.mustConnect("reader")
	ctx := context.Background()
	call := func() error {
		_, err := s.CallTool(ctx, &mcp.CallToolParams{Name: "demo__list_files", Arguments: map[string]any{}})
		return err
	}
	if err := call(); err != nil {
		t.Fatal(err)
	}
	first := h.g.engine.Version()
	waitFor := func(what string, f func() bool) {
		t.Helper()
		for i := 0; i < 100; i++ {
			if f() {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("timed out waiting for %s", what)
	}

	// A broken bundle is rejected; the last good one keeps serving.
	os.WriteFile(filepath.Join(h.dir, "policy.cedar"), []byte(demoPolicy+"\npermit (principal, action ==, resource);"), 0o600)
	waitFor("rejection event", func() bool {
		return h.findEvent(func(e *audit.Event) bool { return e.Type == audit.TypePolicy && e.Code == "bundle_rejected" }) != nil
	})
	if h.g.engine.Version() != first {
		t.Fatal("a broken bundle replaced the good one")
	}
	if err := call(); err != nil {
		t.Fatalf("after a rejected reload: %v", err)
	}

	// A valid change takes effect on the next request, without a restart.
	forbid := demoPolicy + "\n@id(\"freeze\") forbid (principal, action == Action::\"call_tool\", resource in Upstream::\"demo\");"
	os.WriteFile(filepath.Join(h.dir, "policy.cedar"), []byte(forbid), 0o600)
	waitFor("new version", func() bool { return h.g.engine.Version() != first })
	assertDenied(t, call(), "forbidden_by_policy")
	e := h.findEvent(func(e *audit.Event) bool { return e.Type == audit.TypePolicy && e.Code == "bundle_loaded" })
	if e == nil || e.PolicyVersion != h.g.engine.Version() || !strings.Contains(e.Detail, first) {
		t.Errorf("load event = %+v", e)
	}
}
