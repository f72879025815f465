package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/spf13/cobra"

	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/mcpproxy"
	"github.com/portcullis-dev/portcullis/internal/ops"
	"github.com/portcullis-dev/portcullis/internal/sandbox"
)

func sandboxCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "sandbox", Short: "How stdio tool servers are confined"}
	var src source
	show := &cobra.Command{
		Use:   "show UPSTREAM",
		Short: "Show the sandbox a stdio upstream runs in: mode, user, namespaces, paths, limits, system calls denied, and what this kernel enforces",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := src.load()
			if err != nil {
				return err
			}
			var u *config.Upstream
			for i := range cfg.Upstreams {
				if cfg.Upstreams[i].Name == args[0] {
					u = &cfg.Upstreams[i]
				}
			}
			if u == nil {
				return fmt.Errorf("no upstream %q", args[0])
			}
			if u.Stdio == nil {
				return errors.New("not a stdio upstream: only stdio servers are launched by the gateway")
			}
			out := cmd.OutOrStdout()
			sb := u.Stdio.Sandbox
			if sb == nil {
				sb = &config.Sandbox{}
			}
			mode := sb.Mode
			if mode == "" {
				mode = config.SandboxBuiltin
			}
			fmt.Fprintf(out, "upstream   %s\nmode       %s\n", u.Name, mode)
			switch mode {
			case config.SandboxNone:
				fmt.Fprintln(out, "           no confinement: the server runs as the gateway's user, with the gateway's view of the system")
				return nil
			case config.SandboxRuntime:
				fmt.Fprintf(out, "runtime    %s %s ...\n", strings.Join(sb.Runtime, " "), u.Stdio.Command)
				fmt.Fprintln(out, "           the runtime's guarantees apply (docs/sandbox.md); the built-in sandbox is not used")
				return nil
			}
			path, err := exec.LookPath(u.Stdio.Command)
			if err != nil {
				path = u.Stdio.Command + " (not found on this machine's PATH)"
			}
			spec, err := mcpproxy.SandboxSpec(sb, path, u.Stdio.Args, u.Stdio.Dir, ops.DataDir(cfg), "(a private folder, TMPDIR and HOME)")
			if err != nil {
				return err
			}
			user := fmt.Sprintf("%d (nobody)", spec.UID)
			if os.Getuid() != 0 {
				user = fmt.Sprintf("%d inside, mapped to this user (%d): an unprivileged gateway can map only itself", spec.UID, os.Getuid())
			}
			fmt.Fprintf(out, "user       %s\n", user)
			if spec.Egress {
				fmt.Fprintf(out, "namespaces user, mount, pid, ipc, uts, net (loopback only: the gateway's proxy on 127.0.0.1:%d, which HTTP_PROXY and HTTPS_PROXY name)\n", sandbox.EgressPort)
				fmt.Fprintf(out, "egress     %s (every connection audited; any other destination refused and alerted: egress_violation)\n", strings.Join(sb.Egress, " "))
			} else {
				fmt.Fprintln(out, "namespaces user, mount, pid, ipc, uts, net (no interface but a down loopback: no network)")
				fmt.Fprintln(out, "egress     none")
			}
			fmt.Fprintf(out, "read-only  %s\nread-write %s\ndevices    %s\n", strings.Join(spec.ReadOnly, " "), strings.Join(spec.ReadWrite, " "), strings.Join(spec.Files, " "))
			fmt.Fprintf(out, "never      %s (the data directory)\n", ops.DataDir(cfg))
			fmt.Fprintf(out, "limits     memory %d MiB, cpu %s, processes %d, open files %d, core dumps none\n", spec.MemoryBytes>>20, seconds(spec.CPUSeconds), spec.Processes, spec.OpenFiles)
			fmt.Fprintf(out, "seccomp    denies %s\n", strings.Join(sandbox.Denied, " "))
			fmt.Fprintf(out, "env        only the configured variables (and inherit_env), TMPDIR, HOME\n")
			abi, userns, cgroups := sandbox.Kernel()
			state := "enforced"
			if abi < sandbox.MinLandlockABI {
				state = fmt.Sprintf("NOT AVAILABLE: a launch is refused (needs ABI %d)", sandbox.MinLandlockABI)
			}
			fmt.Fprintf(out, "kernel     Landlock ABI %d: %s; user namespaces: %s; cgroups %s: not used (limits are rlimits, per process)\n", abi, state, userns, cgroups)
			return nil
		},
	}
	src.flags(show)
	cmd.AddCommand(show)
	return cmd
}

func seconds(s uint64) string {
	if s == 0 {
		return "unlimited"
	}
	return fmt.Sprintf("%d s", s)
}
