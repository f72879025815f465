package ops

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/reason"
	"github.com/portcullis-dev/portcullis/internal/store"
	"github.com/portcullis-dev/portcullis/internal/toolreg"
)

func testConfig(t *testing.T) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte("version: 1\nagents: [{name: reader, roles: [r]}]\nupstreams: [{name: fs, builtin: demo}]\n"), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestOperationsAreAuditedInTheirStore: one Open serves several
// operations; each change is recorded before it is made, in the same store.
func TestOperationsAreAuditedInTheirStore(t *testing.T) {
	cfg := testConfig(t)
	o, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if st, err := os.Stat(DataDir(cfg)); err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("data directory: %v %v", st, err)
	}
	ctx := context.Background()
	if _, _, err := o.IssueToken(ctx, "nobody", 0, "test"); !errors.Is(err, config.ErrUnknownAgent) {
		t.Errorf("token for an undeclared agent: %v", err)
	}
	raw, c, err := o.IssueToken(ctx, "reader", 0, "test")
	if err != nil || raw == "" || c.Expires.Sub(c.IssuedAt) != cfg.Auth.DefaultTTL.D() {
		t.Fatalf("token: %v, lifetime %s", err, c.Expires.Sub(c.IssuedAt))
	}
	// A grant names a tool the upstream has offered.
	for tool, want := range map[string]string{
		"write":      "name it <upstream>__<tool>",
		"git__write": `no upstream "git"`,
		"fs__write":  "no tool definitions of upstream \"fs\" are recorded yet",
	} {
		if _, err := o.CreateGrant(ctx, "reader", tool, "incident 7", "alice", time.Hour); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("grant of %s: %v, want %q", tool, err, want)
		}
	}
	if err := o.Store().AddPin(ctx, toolreg.Pin{Upstream: "fs", Name: "read", Digest: "sha256:r", Definition: []byte(`{"name":"read"}`), State: toolreg.Approved, SeenAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if _, err := o.CreateGrant(ctx, "reader", "fs__write", "incident 7", "alice", time.Hour); err == nil || !strings.Contains(err.Error(), "offers no tool \"write\" (it offers read)") {
		t.Errorf("grant of a tool the upstream does not offer: %v", err)
	}
	if err := o.Store().AddPin(ctx, toolreg.Pin{Upstream: "fs", Name: "write", Digest: "sha256:w", Definition: []byte(`{"name":"write"}`), State: toolreg.Approved, SeenAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if _, err := o.DecideApproval(ctx, "a-nope", "approved", "alice", "once", ""); err == nil || !strings.Contains(err.Error(), `approval request "a-nope"`) {
		t.Errorf("deciding an unknown approval: %v", err)
	}
	g, err := o.CreateGrant(ctx, "reader", "fs__write", "incident 7", "alice", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if gs, err := o.ListGrants(ctx, true); err != nil || len(gs) != 1 || gs[0].ID != g.ID {
		t.Fatalf("grants: %v %v", gs, err)
	}
	if err := o.Revoke(ctx, store.RevokeAgent, "reader", "alice", "left"); err != nil {
		t.Fatal(err)
	}
	rows, err := o.Store().Events(ctx, store.EventQuery{})
	if err != nil {
		t.Fatal(err)
	}
	var codes []reason.Code
	for _, r := range rows {
		e, err := audit.Decode(r)
		if err != nil {
			t.Fatal(err)
		}
		codes = append(codes, e.Code)
	}
	want := []reason.Code{"", reason.GrantCreated, reason.AgentRevoked}
	if len(codes) != len(want) || codes[0] != want[0] || codes[1] != want[1] || codes[2] != want[2] {
		t.Errorf("events %v, want %v", codes, want)
	}
}

// TestWithLeavesTheStoreToItsOwner: the daemon's Ops does not close the
// daemon's store.
func TestWithLeavesTheStoreToItsOwner(t *testing.T) {
	cfg := testConfig(t)
	st, err := store.Open(filepath.Join(t.TempDir(), StoreFile))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	o := With(cfg, st, nil)
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Events(context.Background(), store.EventQuery{}); err != nil {
		t.Errorf("the store was closed by an Ops it was lent to: %v", err)
	}
}

// TestChangesNameWhoMadeThem: a change attributed to nobody is refused and
// leaves no trace but the refusal.
func TestChangesNameWhoMadeThem(t *testing.T) {
	cfg := testConfig(t)
	o, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	ctx := context.Background()
	if err := o.Revoke(ctx, store.RevokeAgent, "reader", " ", "left"); !errors.Is(err, ErrNoActor) {
		t.Errorf("revoke by nobody: %v", err)
	}
	if err := o.SetSecret(ctx, "k", []byte("v"), ""); !errors.Is(err, ErrNoActor) {
		t.Errorf("secret set by nobody: %v", err)
	}
	if _, _, err := o.IssueToken(ctx, "reader", 0, ""); !errors.Is(err, ErrNoActor) {
		t.Errorf("token issued by nobody: %v", err)
	}
	if _, _, err := o.CreateJoinToken(ctx, "reader", " "); !errors.Is(err, ErrNoActor) {
		t.Errorf("join token created by nobody: %v", err)
	}
	revs, err := o.Store().Revocations(ctx)
	if err != nil || len(revs[store.RevokeAgent]) != 0 {
		t.Errorf("revocations %v %v", revs, err)
	}
	if rows, _ := o.Store().Events(ctx, store.EventQuery{}); len(rows) != 0 {
		t.Errorf("%d events recorded for refused changes", len(rows))
	}
}
