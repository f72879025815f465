package audit_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependenciesPointDown: the packages beneath the gateway (storage,
// the audit log and its offline verification, configuration, identity,
// policy, the tool registry) do not link the screening engine, gitleaks or
// what gitleaks brings (viper), so offline commands such as `audit verify`
// stay small and a change to a detector cannot reach them. Dependencies
// point down: the gateway injects the detectors where they are used.
func TestDependenciesPointDown(t *testing.T) {
	t.Parallel()
	const mod = "github.com/portcullis-dev/portcullis/internal/"
	below := []string{"audit", "store", "config", "toolreg", "token", "identity", "policy",
		"approval", "grant", "budget", "secret", "wire", "metrics", "telemetry", "reason", "outbound", "ops", "authn", "admin"}
	forbidden := []string{mod + "screen", "github.com/zricethezav/gitleaks", "github.com/spf13/viper"}
	args := []string{"list", "-f", "{{.ImportPath}} {{join .Deps \" \"}}"}
	for _, p := range below {
		args = append(args, mod+p)
	}
	out, err := exec.Command("go", args...).Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != len(below) {
		t.Fatalf("go list answered for %d packages, want %d", len(lines), len(below))
	}
	for _, l := range lines {
		deps := strings.Fields(l)
		for _, d := range deps[1:] {
			for _, f := range forbidden {
				if d == f || strings.HasPrefix(d, f+"/") {
					t.Errorf("%s links %s", deps[0], d)
				}
			}
		}
	}
}
