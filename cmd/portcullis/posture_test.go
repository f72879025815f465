package main

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestPostureCommand: the table, JSON and HTML reports of the example
// configuration, and --min-tier / --targets as a CI gate (exit status 4).
func TestPostureCommand(t *testing.T) {
	t.Parallel()
	cfg, _ := filepath.Abs("../../examples/full.yaml")
	data := t.TempDir()
	out, stderr, err := portcullis(t, nil, "posture", "--config", cfg, "--data-dir", data)
	if err != nil || !strings.Contains(out, "Service authentication") || !strings.Contains(out, "Outcome metrics") {
		t.Fatalf("posture: %v\n%s%s", err, out, stderr)
	}
	out, _, err = portcullis(t, nil, "posture", "--config", cfg, "--data-dir", data, "--format", "json")
	var rep struct {
		Capabilities []struct {
			ID   string `json:"id"`
			Tier string `json:"tier"`
		} `json:"capabilities"`
	}
	if err != nil || json.Unmarshal([]byte(out), &rep) != nil || len(rep.Capabilities) != 15 {
		t.Fatalf("json: %v\n%s", err, out)
	}
	out, _, err = portcullis(t, nil, "posture", "--config", cfg, "--data-dir", data, "--format", "html")
	if err != nil || !strings.HasPrefix(out, "<!doctype html>") || strings.Contains(out, "<script") {
		t.Fatalf("html: %v\n%.300s", err, out)
	}
	_, stderr, err = portcullis(t, nil, "posture", "--config", cfg, "--data-dir", data, "--min-tier", "E", "--format", "json")
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != ExitBelowTarget || !strings.Contains(stderr, "below target: ") || !strings.Contains(stderr, "governance (none, target E)") {
		t.Fatalf("--min-tier E: %v %s", err, stderr)
	}
	targets := filepath.Join(t.TempDir(), "targets.yaml")
	writeFile(t, targets, "permission_models: E\ninput_sanitization: E\n")
	if _, stderr, err := portcullis(t, nil, "posture", "--config", cfg, "--data-dir", data, "--targets", targets); err != nil {
		t.Fatalf("targets met: %v %s", err, stderr)
	}
	writeFile(t, targets, "bogus: E\n")
	if _, stderr, err := portcullis(t, nil, "posture", "--config", cfg, "--data-dir", data, "--targets", targets); err == nil || !strings.Contains(stderr, "not a capability") {
		t.Fatalf("bad targets: %v %s", err, stderr)
	}
	if out, _, err := portcullis(t, nil, "posture", "--dev", "--data-dir", data); err != nil || !strings.Contains(out, "embedded development configuration") {
		t.Fatalf("--dev: %v\n%s", err, out)
	}
}

func TestBlastRadiusCommand(t *testing.T) {
	t.Parallel()
	cfg, _ := filepath.Abs("../../examples/agentdojo/workspace.yaml")
	data := t.TempDir()
	out, stderr, err := portcullis(t, nil, "blast-radius", "--agent", "assistant", "--config", cfg, "--data-dir", data)
	if err != nil || !strings.Contains(out, "workspace__send_email") || !strings.Contains(out, "guards: no-untrusted-destinations") || !strings.Contains(out, "lethal trifecta        not within reach: no private data") {
		t.Fatalf("blast-radius: %v\n%s%s", err, out, stderr)
	}
	out, _, err = portcullis(t, nil, "blast-radius", "--agent", "assistant", "--config", cfg, "--data-dir", data, "--tools", "workspace__send_email", "--format", "json")
	var r struct {
		Tools []struct{ Name, Decision string } `json:"tools"`
	}
	if err != nil || json.Unmarshal([]byte(out), &r) != nil || len(r.Tools) != 1 || r.Tools[0].Decision != "guarded" {
		t.Fatalf("--tools: %v\n%s", err, out)
	}
	if _, stderr, err := portcullis(t, nil, "blast-radius", "--agent", "nobody", "--config", cfg, "--data-dir", data); err == nil || !strings.Contains(stderr, "no agent") {
		t.Fatalf("unknown agent: %v %s", err, stderr)
	}
}

// TestPostureEvidence: per-control reports, and the OSCAL document with
// its signature, verified offline with the audit log's key.
func TestPostureEvidence(t *testing.T) {
	t.Parallel()
	cfg, _ := filepath.Abs("../../examples/full.yaml")
	data := t.TempDir()
	out, stderr, err := portcullis(t, nil, "posture", "--config", cfg, "--data-dir", data, "--framework", "owasp-asi")
	if err != nil || !strings.Contains(out, "ASI10") || !strings.Contains(out, "of 10 controls") {
		t.Fatalf("--framework: %v\n%s%s", err, out, stderr)
	}
	if _, stderr, err := portcullis(t, nil, "posture", "--config", cfg, "--data-dir", data, "--framework", "pci"); err == nil || !strings.Contains(stderr, "owasp-asi") {
		t.Fatalf("an unknown framework: %v %s", err, stderr)
	}
	doc := filepath.Join(t.TempDir(), "ar.json")
	if _, stderr, err := portcullis(t, nil, "posture", "--config", cfg, "--data-dir", data, "--framework", "soc2", "--format", "json", "--oscal", doc); err != nil {
		t.Fatalf("--oscal: %v %s", err, stderr)
	}
	key := filepath.Join(data, "keys", "audit-log.pub")
	out, stderr, err = portcullis(t, nil, "posture", "verify", doc, "--key", key)
	if err != nil || !strings.Contains(out, "signature good") || !strings.Contains(out, "checkpoint ") {
		t.Fatalf("verify: %v\n%s%s", err, out, stderr)
	}
	b, _ := os.ReadFile(doc)
	os.WriteFile(doc, append(b, ' '), 0o644)
	if _, stderr, err := portcullis(t, nil, "posture", "verify", doc, "--key", key); err == nil || !strings.Contains(stderr, "another document") {
		t.Fatalf("a changed document verified: %v %s", err, stderr)
	}
}
