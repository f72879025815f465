package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-dev/portcullis/internal/ops"
	"github.com/portcullis-dev/portcullis/internal/toolreg"
)

func TestExamplePolicyTestsPass(t *testing.T) {
	t.Parallel()
	files, _ := filepath.Glob("../../examples/policies/tests/*.yaml")
	if len(files) < 3 {
		t.Fatalf("example policy tests: %v", files)
	}
	out, _, err := portcullis(t, nil, append([]string{"policy", "test"}, files...)...)
	if err != nil || !strings.Contains(out, " 0 failed") {
		t.Fatalf("example policy tests: %v\n%s", err, out)
	}
}

func TestPolicyTestFailsOnAWrongExpectation(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "p.cedar"), `@id("read") permit (principal, action == Action::"call_tool", resource) when { resource.read_only_hint };`)
	writeFile(t, filepath.Join(dir, "cases.yaml"), `policies: [p.cedar]
cases:
  - {name: read, agent: a, action: call_tool, resource: {kind: Tool, id: u__r, upstream: u, read_only_hint: true}, expect: allow, expect_policies: [read]}
  - {name: write is wrongly expected, agent: a, action: call_tool, resource: {kind: Tool, id: u__w, upstream: u}, expect: allow}
`)
	out, _, err := portcullis(t, nil, "policy", "test", filepath.Join(dir, "cases.yaml"))
	if err == nil || !strings.Contains(out, "FAIL") || !strings.Contains(out, "1 passed, 1 failed") {
		t.Fatalf("a failing case passed: %v\n%s", err, out)
	}
}

func TestPolicyExplain(t *testing.T) {
	t.Parallel()
	out, _, err := portcullis(t, nil, "policy", "explain", "--policies", "../../examples/policies",
		"--agent", "ledger", "--role", "finance", "--resource", "bank__transfer", "--class", "moves_money",
		"--args", `{"to_iban":"DE89370400440532013000","amount":99999}`)
	if err != nil || !strings.HasPrefix(out, "DENY") || !strings.Contains(out, `decided by "finance-transfer-limits"`) ||
		!strings.Contains(out, "forbid (") || !strings.Contains(out, "reason: transfer over 1000") {
		t.Fatalf("explain: %v\n%s", err, out)
	}
}

func TestSignedPolicyBundles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pol := filepath.Join(dir, "policies")
	writeFile(t, filepath.Join(pol, "p.cedar"), `permit (principal, action == Action::"call_tool", resource in Upstream::"demo");`)
	if _, _, err := portcullis(t, nil, "policy", "keygen", "policy-admin", filepath.Join(dir, "signer")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := portcullis(t, nil, "policy", "keygen", "mallory", filepath.Join(dir, "mallory")); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "c.yaml")
	writeFile(t, cfg, "version: 1\ndata_dir: data\npolicy: {paths: [policies], require_signed: true, signature: bundle.sig, trusted_keys: [signer.pub]}\n")
	if _, stderr, err := portcullis(t, nil, "config", "validate", cfg); err == nil || !strings.Contains(stderr, "signature") {
		t.Fatalf("unsigned bundle accepted: %v %s", err, stderr)
	}
	if _, _, err := portcullis(t, nil, "policy", "sign", "--key", filepath.Join(dir, "mallory.key"), "--out", filepath.Join(dir, "bundle.sig"), pol); err != nil {
		t.Fatal(err)
	}
	if _, stderr, err := portcullis(t, nil, "config", "validate", cfg); err == nil || !strings.Contains(stderr, "not signed by a trusted key") {
		t.Fatalf("bundle signed by an untrusted key accepted: %v %s", err, stderr)
	}
	if _, _, err := portcullis(t, nil, "policy", "sign", "--key", filepath.Join(dir, "signer.key"), "--out", filepath.Join(dir, "bundle.sig"), pol); err != nil {
		t.Fatal(err)
	}
	if out, stderr, err := portcullis(t, nil, "config", "validate", cfg); err != nil {
		t.Fatalf("signed bundle refused: %v %s %s", err, out, stderr)
	}
	// Any change to the bundle after signing is refused.
	writeFile(t, filepath.Join(pol, "extra.cedar"), `permit (principal, action, resource);`)
	if _, stderr, err := portcullis(t, nil, "config", "validate", cfg); err == nil || !strings.Contains(stderr, "another bundle") {
		t.Fatalf("modified bundle accepted: %v %s", err, stderr)
	}
	os.Remove(filepath.Join(pol, "extra.cedar"))
}

// TestPolicyExplainFromTheConfiguration: with --config, the configured
// bundle decides, the roles and classification come from the file and the
// tool's hints from its recorded definition, so nothing is retyped (and a
// forgotten --read-only cannot flip the answer).
func TestPolicyExplainFromTheConfiguration(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pol, _ := filepath.Abs("../../examples/policies")
	cfgPath := filepath.Join(dir, "c.yaml")
	writeFile(t, cfgPath, fmt.Sprintf(`version: 1
data_dir: data
policy: {paths: [%s]}
agents: [{name: ledger, roles: [finance]}, {name: dev, roles: [developers]}]
upstreams: [{name: bank, builtin: demo}, {name: files, builtin: demo}]
tools: [{name: bank__transfer, classification: [moves_money]}]
`, pol))
	out, stderr, err := portcullis(t, nil, "policy", "explain", "--config", cfgPath, "--agent", "ledger", "--resource", "bank__transfer",
		"--args", `{"to_iban":"DE89370400440532013000","amount":99999}`)
	if err != nil || !strings.HasPrefix(out, "DENY") || !strings.Contains(out, `decided by "finance-transfer-limits"`) {
		t.Fatalf("explain from the configuration: %v\n%s%s", err, out, stderr)
	}
	// The recorded definition says the tool only reads.
	withData(t, cfgPath, func(ctx context.Context, o *ops.Ops) {
		def := `{"name":"read_text_file","annotations":{"readOnlyHint":true}}`
		if err := o.Store().AddPin(ctx, toolreg.Pin{Upstream: "files", Name: "read_text_file", Digest: "sha256:r", Definition: []byte(def), State: toolreg.Approved, SeenAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
	})
	out, stderr, err = portcullis(t, nil, "policy", "explain", "--config", cfgPath, "--agent", "dev", "--resource", "files__read_text_file")
	if err != nil || !strings.HasPrefix(out, "ALLOW") || !strings.Contains(stderr, "read-only true") {
		t.Errorf("explain of a read-only tool: %v\n%s%s", err, out, stderr)
	}
}
