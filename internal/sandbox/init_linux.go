//go:build linux

package sandbox

import (
	"fmt"
	"os"
	"runtime"
	"syscall"
	"unsafe"

	"golang.org/x/net/bpf"

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
	"io_uring_setup", "io_uring_enter", "io_uring_register",
	"pidfd_getfd", "fanotify_init", "quotactl_fd", "personality",
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
	if err := hideSockets(); err != nil {
		return fmt.Errorf("mounts: %w", err)
	}
	if s.Egress {
		if err := openEgress(); err != nil {
			return fmt.Errorf("egress: %w", err)
		}
	}
	// Landlock ABI 6: filesystem, TCP bind and connect (none allowed: the
	// server's network namespace is empty besides), and scoping of
	// abstract UNIX sockets and signals to the sandbox. Not best effort: a
	// kernel that cannot enforce it refuses the launch.
	if err := landlockSelf(s.ReadOnly, s.ReadWrite, s.Files, s.Deny, s.Egress); err != nil {
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
	// Whatever capabilities the init held in its namespace (an
	// unprivileged gateway's ambient ones) end here: none cross the exec.
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		return fmt.Errorf("ambient capabilities: %w", err)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var none [2]unix.CapUserData
	if err := unix.Capset(&hdr, &none[0]); err != nil {
		return fmt.Errorf("capabilities: %w", err)
	}
	if err := loadSeccomp(); err != nil {
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
	// Nothing the gateway may have inherited (a supervisor's descriptors,
	// socket activation) crosses the exec.
	if err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		return fmt.Errorf("close descriptors: %w", err)
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

// nativeArch is the audit architecture of this binary's system calls.
var nativeArch = map[string]uint32{"amd64": 0xc000003e, "arm64": 0xc00000b7}[runtime.GOARCH]

// namespaceFlags are clone's flags that make new namespaces.
const namespaceFlags = unix.CLONE_NEWUSER | unix.CLONE_NEWNS | unix.CLONE_NEWNET | unix.CLONE_NEWPID | unix.CLONE_NEWIPC | unix.CLONE_NEWUTS | unix.CLONE_NEWCGROUP | unix.CLONE_NEWTIME

// loadSeccomp installs, on this thread (the exec that follows leaves no
// other), a filter that kills the process on a system call of another
// architecture or ABI (i386's int 0x80, x32: the deny list is by native
// number), refuses clone with namespace flags and clone3 (ENOSYS: libc
// falls back to clone), then applies the deny list.
func loadSeccomp() error {
	if nativeArch == 0 {
		return fmt.Errorf("no seccomp architecture for %s", runtime.GOARCH)
	}
	deny, err := (&seccomp.Policy{DefaultAction: seccomp.ActionAllow, Syscalls: []seccomp.SyscallGroup{
		{Action: seccomp.ActionErrno, Names: supported(Denied)},
	}}).Assemble()
	if err != nil {
		return err
	}
	kill := bpf.RetConstant{Val: uint32(seccomp.ActionKillProcess)}
	eperm := bpf.RetConstant{Val: uint32(seccomp.ActionErrno) | uint32(unix.EPERM)}
	enosys := bpf.RetConstant{Val: uint32(seccomp.ActionErrno) | uint32(unix.ENOSYS)}
	prefix := []bpf.Instruction{
		bpf.LoadAbsolute{Off: 4, Size: 4}, // seccomp_data.arch
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: nativeArch, SkipTrue: 1},
		kill,
		bpf.LoadAbsolute{Off: 0, Size: 4}, // seccomp_data.nr
	}
	if runtime.GOARCH == "amd64" {
		prefix = append(prefix, bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: 0x40000000, SkipFalse: 1}, kill) // x32
	}
	// socket(..., IPPROTO_MPTCP): Landlock's TCP rules do not govern
	// MPTCP; refused as unsupported, clients fall back to TCP.
	eproto := bpf.RetConstant{Val: uint32(seccomp.ActionErrno) | uint32(unix.EPROTONOSUPPORT)}
	prefix = append(prefix,
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(unix.SYS_SOCKET), SkipFalse: 4},
		bpf.LoadAbsolute{Off: 32, Size: 4}, // args[2], its low half: the protocol
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.IPPROTO_MPTCP, SkipFalse: 1},
		eproto,
		bpf.LoadAbsolute{Off: 0, Size: 4}, // the number again
	)
	prefix = append(prefix,
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(unix.SYS_CLONE3), SkipFalse: 1},
		enosys,
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(unix.SYS_CLONE), SkipFalse: 3},
		bpf.LoadAbsolute{Off: 16, Size: 4}, // args[0], its low half: the flags
		bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: namespaceFlags, SkipFalse: 1},
		eperm,
	)
	raw, err := bpf.Assemble(append(prefix, deny...))
	if err != nil {
		return err
	}
	filter := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		filter[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return err
	}
	if _, _, e := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, 0, uintptr(unsafe.Pointer(&prog))); e != 0 {
		return e
	}
	return nil
}

// hideSockets gives the server empty /run, /var/run and /dev/shm of its
// own (in its mount namespace, made private first so nothing propagates
// to the host): Landlock's ABI 6 does not govern connecting to a UNIX
// socket file, and the host's sockets (D-Bus, a container engine) live
// there.
func hideSockets() error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("private propagation: %w", err)
	}
	for _, p := range []string{"/run", "/var/run", "/dev/shm"} {
		st, err := os.Lstat(p)
		if err != nil || !st.IsDir() {
			continue // absent, or a link to one already hidden
		}
		if err := unix.Mount("tmpfs", p, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "size=1m,mode=755"); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
	}
	return nil
}
