package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestSystemdUnit checks deploy/systemd/portcullis.service: systemd
// accepts it (systemd-analyze verify, with the binary path pointed at this
// build), and its command lines are ones this CLI accepts.
func TestSystemdUnit(t *testing.T) {
	t.Parallel()
	const unitPath = "../../deploy/systemd/portcullis.service"
	const bin = "/usr/local/bin/portcullis"
	const cfgPath = "/etc/portcullis/portcullis.yaml"
	raw, err := os.ReadFile(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	unit := string(raw)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "portcullis.yaml")
	writeFile(t, filepath.Join(dir, "p.cedar"), `permit (principal, action == Action::"call_tool", resource in Upstream::"demo");`)
	writeFile(t, cfg, "version: 1\ndata_dir: /var/lib/portcullis\npolicy: {paths: [p.cedar]}\nagents: [{name: a}]\nupstreams: [{name: demo, builtin: demo}]\n")
	var lines int
	for _, line := range strings.Split(unit, "\n") {
		key, val, ok := strings.Cut(line, "=")
		if !ok || (key != "ExecStart" && key != "ExecStartPre") {
			continue
		}
		lines++
		args := strings.Fields(val)
		if args[0] != bin {
			t.Fatalf("%s runs %s, not %s", key, args[0], bin)
		}
		for i, a := range args {
			if a == cfgPath {
				args[i] = cfg
			}
		}
		if args[1] == "serve" {
			args = append(args, "--help") // the flags parse; nothing is served
		}
		if out, stderr, err := portcullis(t, nil, args[1:]...); err != nil {
			t.Fatalf("%s %v: %v\n%s%s", key, args[1:], err, out, stderr)
		}
	}
	if lines != 2 {
		t.Fatalf("%d command lines", lines)
	}
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed: the unit's syntax is not checked here")
	}
	copyPath := filepath.Join(dir, "portcullis.service")
	writeFile(t, copyPath, strings.ReplaceAll(unit, bin, os.Args[0]))
	out, err := exec.Command(analyze, "verify", copyPath).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}
