//go:build linux

package sandbox

import (
	"fmt"
	"os"
	"runtime"
	"syscall"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"golang.org/x/sys/unix"
)

// Denied are the system calls tool servers never need: tracing other
// processes, mounting, loading kernels, modules or BPF programs, the
// keyring, namespaces, raw I/O ports, changing the clock, and the rest
// moby's default profile also refuses.
var Denied = []string{
	"ptrace", "process_vm_readv", "process_vm_writev", "kcmp",
	"mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
	"kexec_load", "kexec_file_load", "reboot",
	"init_module", "finit_module", "delete_module",
	"bpf", "perf_event_open", "userfaultfd",
	"keyctl", "add_key", "request_key",
	"setns", "unshare",
	"iopl", "ioperm", "swapon", "swapoff", "acct", "quotactl", "lookup_dcookie",
	"settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "syslog",
	"open_by_handle_at", "name_to_handle_at", "nfsservctl", "vhangup",
}

// enter applies spec to this process, which then becomes the server.
func enter(s *Spec) error {
	runtime.LockOSThread() // the restrictions are the exec'ing thread's
	for _, l := range []struct {
		res int
		v   uint64
	}{{unix.RLIMIT_DATA, s.MemoryBytes}, {unix.RLIMIT_CPU, s.CPUSeconds}, {unix.RLIMIT_NPROC, s.Processes}, {unix.RLIMIT_NOFILE, s.OpenFiles}} {
		if l.v == 0 {
			continue
		}
		if err := unix.Setrlimit(l.res, &unix.Rlimit{Cur: l.v, Max: l.v}); err != nil {
			return fmt.Errorf("limit %d: %w", l.res, err)
		}
	}
	if err := unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{}); err != nil {
		return fmt.Errorf("limit core: %w", err)
	}
	// Landlock ABI 6: filesystem, TCP bind and connect (none allowed: the
	// server's network namespace is empty besides), and scoping of
	// abstract UNIX sockets and signals to the sandbox. Not best effort: a
	// kernel that cannot enforce it refuses the launch.
	if err := landlockSelf(s.ReadOnly, s.ReadWrite, s.Files); err != nil {
		return fmt.Errorf("landlock: %w", err)
	}
	if os.Getuid() != s.UID {
		// Started as root of the namespace: drop to the server's user
		// (every thread), with no supplementary groups.
		if err := syscall.Setgroups(nil); err != nil {
			return fmt.Errorf("setgroups: %w", err)
		}
		if err := syscall.Setgid(s.GID); err != nil {
			return fmt.Errorf("setgid: %w", err)
		}
		if err := syscall.Setuid(s.UID); err != nil {
			return fmt.Errorf("setuid: %w", err)
		}
	}
	if err := seccomp.LoadFilter(seccomp.Filter{
		NoNewPrivs: true,
		// This thread only: the exec that follows leaves no other.
		Policy: seccomp.Policy{DefaultAction: seccomp.ActionAllow, Syscalls: []seccomp.SyscallGroup{
			{Action: seccomp.ActionErrno, Names: supported(Denied)},
		}},
	}); err != nil {
		return fmt.Errorf("seccomp: %w", err)
	}
	if err := CheckPins(s.Pins); err != nil {
		return err
	}
	if s.Dir != "" {
		if err := os.Chdir(s.Dir); err != nil {
			return fmt.Errorf("working directory: %w", err)
		}
	}
	err := syscall.Exec(s.Path, s.Args, s.Env)
	return fmt.Errorf("exec %s: %w", s.Path, err)
}

// supported keeps the names this architecture's seccomp table knows.
func supported(names []string) []string {
	var out []string
	for _, n := range names {
		p := seccomp.Policy{DefaultAction: seccomp.ActionAllow, Syscalls: []seccomp.SyscallGroup{{Action: seccomp.ActionErrno, Names: []string{n}}}}
		if _, err := p.Assemble(); err == nil {
			out = append(out, n)
		}
	}
	return out
}
