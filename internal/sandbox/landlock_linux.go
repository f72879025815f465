//go:build linux

package sandbox

import (
	"fmt"
	"os"
	"path/filepath"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Landlock through golang.org/x/sys/unix's bindings, on the calling
// thread only (the init execs right after, which leaves no other thread):
// the all-threads paths of higher-level bindings are not needed, and
// their thread-wrapping helpers stay out of the gateway's binary.

// MinLandlockABI is the least Landlock ABI the sandbox runs with: 6
// (filesystem, TCP bind and connect, scoping of abstract UNIX sockets
// and signals).
const MinLandlockABI = 6

const (
	fsRead    = unix.LANDLOCK_ACCESS_FS_EXECUTE | unix.LANDLOCK_ACCESS_FS_READ_FILE | unix.LANDLOCK_ACCESS_FS_READ_DIR
	fsFileRO  = unix.LANDLOCK_ACCESS_FS_EXECUTE | unix.LANDLOCK_ACCESS_FS_READ_FILE
	fsFileRW  = unix.LANDLOCK_ACCESS_FS_READ_FILE | unix.LANDLOCK_ACCESS_FS_WRITE_FILE | unix.LANDLOCK_ACCESS_FS_TRUNCATE | unix.LANDLOCK_ACCESS_FS_IOCTL_DEV
	fsHandled = fsRead | unix.LANDLOCK_ACCESS_FS_WRITE_FILE | unix.LANDLOCK_ACCESS_FS_REMOVE_DIR | unix.LANDLOCK_ACCESS_FS_REMOVE_FILE |
		unix.LANDLOCK_ACCESS_FS_MAKE_CHAR | unix.LANDLOCK_ACCESS_FS_MAKE_DIR | unix.LANDLOCK_ACCESS_FS_MAKE_REG | unix.LANDLOCK_ACCESS_FS_MAKE_SOCK |
		unix.LANDLOCK_ACCESS_FS_MAKE_FIFO | unix.LANDLOCK_ACCESS_FS_MAKE_BLOCK | unix.LANDLOCK_ACCESS_FS_MAKE_SYM | unix.LANDLOCK_ACCESS_FS_REFER |
		unix.LANDLOCK_ACCESS_FS_TRUNCATE | unix.LANDLOCK_ACCESS_FS_IOCTL_DEV
	// fsDirRW: everything but making devices.
	fsDirRW = fsHandled &^ (unix.LANDLOCK_ACCESS_FS_MAKE_CHAR | unix.LANDLOCK_ACCESS_FS_MAKE_BLOCK)
)

// LandlockABI returns the kernel's Landlock ABI version (0: none).
func LandlockABI() int {
	v, _, e := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, 0, 0, unix.LANDLOCK_CREATE_RULESET_VERSION)
	if e != 0 {
		return 0
	}
	return int(v)
}

// netPortAttr is the kernel's struct landlock_net_port_attr (rule type
// ruleNetPort), which golang.org/x/sys/unix does not define.
type netPortAttr struct{ allowed, port uint64 }

const ruleNetPort = 2 // LANDLOCK_RULE_NET_PORT

func landlockSelf(ro, rw, files, deny []string, egress bool) error {
	if abi := LandlockABI(); abi < MinLandlockABI {
		return fmt.Errorf("the kernel's Landlock ABI is %d; the sandbox needs %d", abi, MinLandlockABI)
	}
	attr := unix.LandlockRulesetAttr{
		Handled_access_fs:  fsHandled,
		Handled_access_net: unix.LANDLOCK_ACCESS_NET_BIND_TCP | unix.LANDLOCK_ACCESS_NET_CONNECT_TCP,
		Scoped:             unix.LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET | unix.LANDLOCK_SCOPE_SIGNAL,
	}
	fd, _, e := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr), 0)
	if e != 0 {
		return fmt.Errorf("create ruleset: %w", e)
	}
	defer unix.Close(int(fd))
	add := func(p string, rw bool) error {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			p = r // /lib -> /usr/lib; the rule is on what it names
		}
		st, err := os.Stat(p)
		if err != nil {
			return nil // a missing path grants nothing
		}
		access := uint64(fsRead)
		switch {
		case st.IsDir() && rw:
			access = fsDirRW
		case !st.IsDir() && rw:
			access = fsFileRW
		case !st.IsDir():
			access = fsFileRO
		}
		pfd, err := unix.Open(p, unix.O_PATH|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		defer unix.Close(pfd)
		// What was opened, not what was named: a path swapped for a link
		// since the gateway checked it is caught here.
		real, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", pfd))
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		for _, d := range deny {
			if Within(real, d) || Within(d, real) {
				return fmt.Errorf("%s (%s) would reach %s", p, real, d)
			}
		}
		pb := unix.LandlockPathBeneathAttr{Allowed_access: access, Parent_fd: int32(pfd)}
		if _, _, e := unix.Syscall6(unix.SYS_LANDLOCK_ADD_RULE, fd, unix.LANDLOCK_RULE_PATH_BENEATH, uintptr(unsafe.Pointer(&pb)), 0, 0, 0); e != 0 {
			return fmt.Errorf("%s: %w", p, e)
		}
		return nil
	}
	for _, p := range ro {
		if err := add(p, false); err != nil {
			return err
		}
	}
	for _, p := range append(rw, files...) {
		if err := add(p, true); err != nil {
			return err
		}
	}
	if egress {
		// The proxy's port, the only one in a namespace that has nothing
		// else to reach.
		np := netPortAttr{allowed: unix.LANDLOCK_ACCESS_NET_CONNECT_TCP, port: EgressPort}
		if _, _, e := unix.Syscall6(unix.SYS_LANDLOCK_ADD_RULE, fd, ruleNetPort, uintptr(unsafe.Pointer(&np)), 0, 0, 0); e != 0 {
			return fmt.Errorf("egress port: %w", e)
		}
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	if _, _, e := unix.Syscall(unix.SYS_LANDLOCK_RESTRICT_SELF, fd, 0, 0); e != 0 {
		return fmt.Errorf("restrict self: %w", e)
	}
	return nil
}
