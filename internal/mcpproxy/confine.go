package mcpproxy

import (
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/sandbox"
)

// Sandbox defaults (config.Sandbox documents them).
const (
	defaultSandboxMemoryMB  = 2048
	defaultSandboxProcesses = 512
	defaultSandboxOpenFiles = 1024
)

// SandboxSpec is the built-in sandbox a stdio server runs in: its user,
// paths and limits (without the environment, which holds secrets).
func SandboxSpec(sb *config.Sandbox, path string, args []string, dir, dataDir, tmp string) (sandbox.Spec, error) {
	if sb == nil {
		sb = &config.Sandbox{}
	}
	s := sandbox.Spec{Path: path, Args: append([]string{path}, args...), Dir: dir,
		ReadOnly: append(append([]string(nil), sandbox.DefaultReadOnly...), sandbox.CodePaths(path, args)...),
		Files:    sandbox.DefaultFiles, UID: sandbox.Unprivileged, GID: sandbox.Unprivileged,
		MemoryBytes: uint64(orDefault(sb.MemoryMB, defaultSandboxMemoryMB)) << 20, CPUSeconds: uint64(sb.CPUSeconds),
		Processes: uint64(orDefault(sb.Processes, defaultSandboxProcesses)), OpenFiles: uint64(orDefault(sb.OpenFiles, defaultSandboxOpenFiles)),
		Egress: len(sb.Egress) > 0}
	s.ReadOnly = append(s.ReadOnly, sb.ReadOnly...)
	if dir != "" {
		s.ReadOnly = append(s.ReadOnly, dir)
	}
	if tmp != "" {
		s.ReadWrite = append(s.ReadWrite, tmp)
	}
	s.ReadWrite = append(s.ReadWrite, sb.ReadWrite...)
	// Every grant by its real path: a link must not lead the rules (and the
	// data directory check) elsewhere.
	for _, l := range []*[]string{&s.ReadOnly, &s.ReadWrite} {
		for i, p := range *l {
			if r, err := filepath.EvalSymlinks(p); err == nil {
				(*l)[i] = r
			}
		}
	}
	if dataDir != "" {
		data, err := filepath.Abs(dataDir)
		if err != nil {
			return s, err
		}
		if r, err := filepath.EvalSymlinks(data); err == nil {
			data = r
		}
		for _, p := range append(append([]string(nil), s.ReadOnly...), s.ReadWrite...) {
			if sandbox.Within(p, data) || sandbox.Within(data, p) {
				return s, fmt.Errorf("sandbox: %s would reach the gateway's data directory %s", p, data)
			}
		}
		s.Deny = []string{data}
	}
	return s, nil
}

func orDefault(v, d int) int {
	if v == 0 {
		return d
	}
	return v
}

// confine returns the command that runs the server as sb says, and the
// gateway's end of its way out when it has egress.
func confine(sb *config.Sandbox, path string, args, env []string, dir, dataDir, tmp string, pins map[string]string, log *slog.Logger) (*exec.Cmd, *sandbox.Egress, error) {
	if sb.Mode == config.SandboxNone || sb.Mode == config.SandboxRuntime {
		// Outside the built-in sandbox the pins are checked here, before
		// the launch.
		if err := sandbox.CheckPins(pins); err != nil {
			return nil, nil, err
		}
	}
	switch sb.Mode {
	case config.SandboxNone:
		log.Warn("upstream launched without a sandbox (sandbox.mode: none)", "command", path)
		cmd := exec.Command(path, args...)
		cmd.Env, cmd.Dir = env, dir
		return cmd, nil, nil
	case config.SandboxRuntime:
		rt, err := exec.LookPath(sb.Runtime[0])
		if err != nil {
			return nil, nil, fmt.Errorf("sandbox runtime: %w", err)
		}
		cmd := exec.Command(rt, append(append(append([]string(nil), sb.Runtime[1:]...), path), args...)...)
		cmd.Env, cmd.Dir = env, dir
		return cmd, nil, nil
	}
	spec, err := SandboxSpec(sb, path, args, dir, dataDir, tmp)
	if err != nil {
		return nil, nil, err
	}
	spec.Env = append(append([]string(nil), env...), "TMPDIR="+tmp, "HOME="+tmp)
	if spec.Egress {
		spec.Env = append(spec.Env, sandbox.ProxyEnv()...)
	}
	for p := range pins {
		for _, rw := range spec.ReadWrite {
			if r, err := filepath.EvalSymlinks(p); err == nil && sandbox.Within(r, rw) {
				return nil, nil, fmt.Errorf("sandbox: pinned file %s is in a path the server may write (%s): the pin would prove nothing", p, rw)
			}
		}
	}
	spec.Pins = pins
	return sandbox.Command(spec)
}

// sandboxTemp makes a sandboxed server's private folder, its user's own.
func sandboxTemp() (string, error) {
	tmp, err := os.MkdirTemp("", "portcullis-sandbox-")
	if err != nil {
		return "", fmt.Errorf("sandbox: %w", err)
	}
	if os.Getuid() == 0 {
		if err := os.Chown(tmp, sandbox.Unprivileged, sandbox.Unprivileged); err != nil {
			os.RemoveAll(tmp)
			return "", fmt.Errorf("sandbox: %w", err)
		}
	}
	return tmp, nil
}
