package gateway

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"golang.org/x/mod/sumdb/note"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/toolreg"
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

func TestJustInTimeGrants(t *testing.T) {
	t.Parallel()
	h := startDemo(t)
	s := h.mustConnect("reader")
	ctx := context.Background()
	n := 0
	send := func(to string) error { // distinct bodies: identical repeats would trip the breaker
		n++
		_, err := s.CallTool(ctx, &mcp.CallToolParams{Name: "demo__send_message", Arguments: map[string]any{"to": to, "body": fmt.Sprint("hi ", n)}})
		return err
	}
	assertDenied(t, send("bob@example.com"), "no_permit")
	if _, err := cli(t, h.cfg).CreateGrant(ctx, "reader", "demo__send_message", "incident 42: notify bob", "reader", time.Minute); err == nil {
		t.Fatal("an agent granted itself a privilege")
	}
	g, err := cli(t, h.cfg).CreateGrant(ctx, "reader", "demo__send_message", "incident 42: notify bob", "oncall-alice", 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for send("bob@example.com") != nil {
		if time.Now().After(deadline) {
			t.Fatal("grant never took effect")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if names := toolNames(t, s); !slices.Contains(names, "demo__send_message") {
		t.Errorf("granted tool not listed: %v", names)
	}
	assertDenied(t, send("eve@evil.test"), "forbidden_by_policy") // a grant never beats a forbid
	e := h.findEvent(func(e *audit.Event) bool { return e.Outcome == audit.OutcomeAllow && e.Target == "demo__send_message" })
	if e == nil || !slices.Contains(e.Policies, "grant:"+g.ID) {
		t.Errorf("allow under a grant = %+v", e)
	}
	// It expires by itself.
	time.Sleep(time.Until(g.Expires) + 100*time.Millisecond)
	assertDenied(t, send("bob@example.com"), "no_permit")
	if h.findEvent(func(e *audit.Event) bool { return e.Type == audit.TypePrivilege && e.Code == "grant_expired" }) == nil {
		t.Error("expiry not audited")
	}
	// Revocation ends one early.
	g2, _ := cli(t, h.cfg).CreateGrant(ctx, "reader", "demo__send_message", "again", "oncall-alice", time.Hour)
	deadline = time.Now().Add(3 * time.Second)
	for send("bob@example.com") != nil {
		if time.Now().After(deadline) {
			t.Fatal("second grant never took effect")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := cli(t, h.cfg).RevokeGrant(ctx, g2.ID, "oncall-alice"); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(3 * time.Second)
	for send("bob@example.com") == nil {
		if time.Now().After(deadline) {
			t.Fatal("revoked grant still honoured")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestRepeatBreakerTripsAndIsAudited(t *testing.T) {
	t.Parallel()
	h := startGateway(t, demoConfig+"limits: {repeat_call_limit: 5}\n", map[string]string{"policy.cedar": demoPolicy})
	s := h.mustConnect("reader")
	call := func(q string) error {
		_, err := s.CallTool(context.Background(), &mcp.CallToolParams{Name: "demo__search_files", Arguments: map[string]any{"query": q}})
		return err
	}
	for i := 0; i < 5; i++ {
		if err := call("loop"); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	assertDenied(t, call("loop"), "breaker_open")
	assertDenied(t, call("something else"), "breaker_open") // the tool is closed to the agent for the cool-down
	if _, err := h.mustConnect("mailer").CallTool(context.Background(), &mcp.CallToolParams{Name: "demo__search_files", Arguments: map[string]any{"query": "loop"}}); err != nil {
		t.Errorf("another agent is affected: %v", err)
	}
	if e := h.findEvent(func(e *audit.Event) bool {
		return e.Code == "breaker_open" && strings.Contains(e.Detail, "breaker opened")
	}); e == nil || e.Agent != "reader" {
		t.Errorf("breaker event = %+v", e)
	}
}

func TestAIBOM(t *testing.T) {
	t.Parallel()
	h := startDemo(t) // pins the demo tools
	h.stop()
	h.cfg.Upstreams = append(h.cfg.Upstreams,
		config.Upstream{Name: "files", Stdio: &config.StdioServer{Command: "npx", Args: []string{"-y", "@modelcontextprotocol/server-filesystem@2026.8.31", "/srv"}}},
		config.Upstream{Name: "remote", HTTP: &config.HTTPServer{URL: "https://user:pw@mcp.example.com/mcp?key=secret"}})
	b, err := cli(t, h.cfg).BOM(context.Background(), "test")
	if err != nil {
		t.Fatal(err)
	}
	js, _ := json.Marshal(b)
	s := string(js)
	for _, want := range []string{`"bomFormat":"CycloneDX"`, `"specVersion":"1.6"`, `"purl":"pkg:npm/%40modelcontextprotocol/server-filesystem@2026.8.31"`,
		`"name":"read_file"`, `"portcullis:definition-digest"`, `"value":"approved"`, `"https://mcp.example.com/mcp"`} {
		if !strings.Contains(s, want) {
			t.Errorf("BOM lacks %s", want)
		}
	}
	if strings.Contains(s, "secret") || strings.Contains(s, "pw@") {
		t.Error("BOM leaks URL credentials")
	}
}

func TestSignedServerManifests(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	base := strings.Replace(demoConfig, "data_dir: DIR/data", "data_dir: "+data, 1)
	h := startGateway(t, base, map[string]string{"policy.cedar": demoPolicy}) // pins the demo tools (first use)
	h.stop()
	skey, vkey, err := note.GenerateKey(rand.Reader, "ops")
	if err != nil {
		t.Fatal(err)
	}
	m, err := cli(t, h.cfg).BuildManifest(context.Background(), "demo")
	if err != nil {
		t.Fatal(err)
	}
	delete(m.Tools, "send_message") // the signer approves all but one tool
	msg, err := toolreg.SignManifest(m, skey)
	if err != nil {
		t.Fatal(err)
	}
	required := base + "manifests: {require_signed: true, dir: DIR/manifests, trusted_keys: [DIR/ops.pub]}\n"
	files := map[string]string{"policy.cedar": demoPolicy, "ops.pub": vkey}
	start := func(manifest []byte) *harness {
		dir := t.TempDir()
		os.MkdirAll(filepath.Join(dir, "m"), 0o700)
		os.WriteFile(filepath.Join(dir, "m", "demo.manifest"), manifest, 0o600)
		return startGateway(t, strings.Replace(required, "DIR/manifests", filepath.Join(dir, "m"), 1), files)
	}
	h = start(msg)
	got := toolNames(t, h.mustConnect("mailer"))
	if !slices.Contains(got, "demo__read_file") || slices.Contains(got, "demo__send_message") {
		t.Errorf("with the manifest: %v; want the signed tools only", got)
	}
	h.stop()

	// A tampered manifest: the upstream is not started at all.
	tampered := []byte(strings.Replace(string(msg), "tool read_file", "tool read_fil3", 1))
	h = start(tampered)
	if got := toolNames(t, h.mustConnect("mailer")); len(got) != 0 {
		t.Errorf("upstream with a tampered manifest serves %v", got)
	}
	if e := h.findEvent(func(e *audit.Event) bool { return e.Code == "manifest_invalid" && e.Upstream == "demo" }); e == nil {
		t.Error("refused upstream not audited")
	}
	// With its only upstream refused, the gateway can serve nothing: not
	// ready, and the body says why.
	if code, body := h.adminGet("/readyz"); code != http.StatusServiceUnavailable || !strings.HasPrefix(body, "not ready\n") || !strings.Contains(body, "upstream demo: refused: ") {
		t.Errorf("readyz with every upstream refused: %d %q", code, body)
	}
}
