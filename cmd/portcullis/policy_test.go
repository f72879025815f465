package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
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
