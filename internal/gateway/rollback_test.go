package gateway

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/reason"
	"github.com/portcullis-dev/portcullis/internal/store"
)

// A bad change is rolled back from the CLI and the running gateway
// follows within its reload interval, whatever the files say until the
// rollback is released; and a rejected edit found at a restart is not an
// outage: the gateway starts on the last good bundle.
func TestPolicyRollbackAndLastGood(t *testing.T) {
	conf := `
version: 1
data_dir: DIR/data
policy: {paths: [DIR/policy.cedar], reload_interval: 50ms}
agents: [{name: reader}]
upstreams: [{name: demo, builtin: demo}]
`
	good := `permit (principal, action == Action::"call_tool", resource == Tool::"demo__list_files");`
	h := startGateway(t, conf, map[string]string{"policy.cedar": good})
	ctx := context.Background()
	first := h.g.engine.Version()
	write := func(body string) {
		t.Helper()
		p := filepath.Join(h.dir, "policy.cedar")
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		future := time.Now().Add(time.Duration(len(body)) * time.Second) // a new mtime even within the clock's grain
		os.Chtimes(p, future, future)
	}
	waitVersion := func(want string, what string) {
		t.Helper()
		for i := 0; i < 200 && h.g.engine.Version() != want; i++ {
			time.Sleep(25 * time.Millisecond)
		}
		if got := h.g.engine.Version(); got != want {
			t.Fatalf("%s: serving %s, want %s", what, got, want)
		}
	}
	// A change that allows too much.
	write(`permit (principal, action, resource);`)
	for i := 0; i < 200 && h.g.engine.Version() == first; i++ {
		time.Sleep(25 * time.Millisecond)
	}
	second := h.g.engine.Version()
	if second == first {
		t.Fatal("the edit was not loaded")
	}
	o := cli(t, h.cfg)
	to, err := o.RollbackPolicy(ctx, "", "alice", "permits everything")
	if err != nil || to != first {
		t.Fatalf("rollback: %q %v (want %s)", to, err, first)
	}
	waitVersion(first, "after the rollback")
	// The files change again: the rollback holds.
	write(`permit (principal, action == Action::"call_tool", resource);`)
	time.Sleep(300 * time.Millisecond)
	if h.g.engine.Version() != first {
		t.Fatal("a file change displaced the rollback")
	}
	if err := o.ReleaseRollback(ctx, "alice", "fixed in review"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 200 && h.g.engine.Version() == first; i++ {
		time.Sleep(25 * time.Millisecond)
	}
	third := h.g.engine.Version()
	if third == first || third == second {
		t.Fatalf("after the release: serving %s", third)
	}
	for _, code := range []reason.Code{reason.BundleRolledBack, reason.BundleRollbackReleased} {
		e := h.findEvent(func(e *audit.Event) bool { return e.Type == audit.TypePolicy && e.Code == code })
		if !strings.Contains(e.Detail, "by alice") {
			t.Errorf("%s: %q", code, e.Detail)
		}
	}
	h.findEvent(func(e *audit.Event) bool {
		return e.Type == audit.TypePolicy && e.Code == reason.BundleLoaded && e.PolicyVersion == first && strings.Contains(e.Detail, "rolled back by alice")
	})

	// A broken edit, then a restart: the last good bundle serves.
	h.stop()
	write(`permit (principal, action, resource) when { nonsense };`)
	// restart builds a gateway on the same data directory, runs it
	// briefly and stops it; it returns the version it served.
	restart := func() string {
		t.Helper()
		g, err := New(h.cfg, Options{Log: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelError}))})
		if err != nil {
			t.Fatalf("a rejected edit stopped the gateway: %v", err)
		}
		if err := g.Listen(); err != nil {
			t.Fatal(err)
		}
		rctx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- g.Run(rctx) }()
		v := g.engine.Version()
		stop()
		<-done
		return v
	}
	if v := restart(); v != third {
		t.Fatalf("restarted on %s, want the last good %s", v, third)
	}
	st, err := store.Open(filepath.Join(h.g.dataDir, "portcullis.db"))
	if err != nil {
		t.Fatal(err)
	}
	rows, _ := st.Events(ctx, store.EventQuery{Types: []string{string(audit.TypePolicy)}})
	st.Close()
	found := false
	for _, r := range rows {
		if e, err := audit.Decode(r); err == nil && e.Code == reason.BundleLastGood && e.PolicyVersion == third {
			found = true
		}
	}
	if !found {
		t.Error("starting on the last good bundle was not audited")
	}
	// A rollback holds across restarts too.
	o2 := cli(t, h.cfg)
	if _, err := o2.RollbackPolicy(ctx, first, "bob", "incident 42"); err != nil {
		t.Fatal(err)
	}
	o2.Close()
	if v := restart(); v != first {
		t.Fatalf("restarted on %s, want the rollback %s", v, first)
	}
}
