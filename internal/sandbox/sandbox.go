// Package sandbox launches stdio tool servers confined: their own
// unprivileged user, new user, mount, PID, IPC, UTS and network namespaces,
// a Landlock filesystem policy (read-only paths, read-write paths, nothing
// else; the gateway's data directory never), a seccomp filter denying what
// tool servers never need, resource limits, and only the environment the
// configuration gives.
//
// Go cannot run code between fork and exec, so the gateway re-executes its
// own binary as a small init (Main, called first thing by every binary that
// launches servers) which, already inside the namespaces, sets the limits,
// applies Landlock and seccomp to itself and then execs the server: the
// restrictions carry over the exec and cannot be lifted.
//
// A level that cannot be had is an error, never a silent downgrade.
package sandbox

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Spec is what the init applies before it execs the server.
type Spec struct {
	Path      string   `json:"path"` // the server's executable
	Args      []string `json:"args"` // argv, argv[0] included
	Env       []string `json:"env"`
	Dir       string   `json:"dir,omitempty"`
	ReadOnly  []string `json:"read_only"`
	ReadWrite []string `json:"read_write"`
	// Files are single files granted read-write (/dev/null).
	Files []string `json:"files,omitempty"`
	// Limits (0: none).
	MemoryBytes uint64 `json:"memory_bytes,omitempty"`
	CPUSeconds  uint64 `json:"cpu_seconds,omitempty"`
	Processes   uint64 `json:"processes,omitempty"`
	OpenFiles   uint64 `json:"open_files,omitempty"`
	// Pins are files the server runs (its entry script, its package's
	// lockfile) and their SHA-256: the init hashes them after the
	// sandbox is in force, right before the exec, and refuses to go on
	// on a mismatch.
	Pins map[string]string `json:"pins,omitempty"`
	// Deny are paths no rule may reach (the gateway's data directory),
	// checked again in the init on the opened paths.
	Deny []string `json:"deny,omitempty"`
	// Egress gives the server a way out: the loopback interface, where
	// the gateway's proxy listens on EgressPort (egress.go). Without it
	// the network namespace is empty.
	Egress bool `json:"egress,omitempty"`
	// UID and GID are the server's, inside and outside its user namespace.
	UID int `json:"uid"`
	GID int `json:"gid"`
}

// initArg is the argv[0] the init runs under.
const initArg = "portcullis-sandbox-init"

// specEnv carries the spec to the init (its environment is replaced by the
// spec's before the exec).
const specEnv = "PORTCULLIS_SANDBOX_SPEC"

// Unprivileged is the user a server runs as when the gateway runs as root
// (nobody); otherwise the gateway's own user, the only one an
// unprivileged process may map.
const Unprivileged = 65534

// Namespaces are the namespaces every sandboxed server gets.
const Namespaces = syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS | syscall.CLONE_NEWPID | syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS | syscall.CLONE_NEWNET

// Command returns the command that runs spec's server in the sandbox:
// this binary as the init, in new namespaces, as an unprivileged user.
// With spec.Egress it returns the gateway's end of the server's way out
// too (Egress.Listener once the command has started; Close it when the
// launch fails or ends).
func Command(spec Spec) (*exec.Cmd, *Egress, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, nil, fmt.Errorf("sandbox: %w", err)
	}
	if spec.Path == "" || !filepath.IsAbs(spec.Path) {
		return nil, nil, errors.New("sandbox: the server's path must be absolute")
	}
	b, err := json.Marshal(spec)
	if err != nil {
		return nil, nil, err
	}
	cmd := &exec.Cmd{Path: self, Args: []string{initArg}, Env: []string{specEnv + "=" + string(b)}, Dir: "/"}
	attr := &syscall.SysProcAttr{Cloneflags: Namespaces, Pdeathsig: syscall.SIGKILL, Setsid: true}
	if os.Getuid() == 0 {
		// The init starts as root of its namespace (root outside, so
		// that it can execute this binary wherever it is) and becomes the
		// unprivileged user, mapped to the same one outside, before it
		// execs the server.
		attr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 1}, {ContainerID: spec.UID, HostID: spec.UID, Size: 1}}
		attr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 1}, {ContainerID: spec.GID, HostID: spec.GID, Size: 1}}
		attr.GidMappingsEnableSetgroups = true
	} else {
		// An unprivileged gateway can map only itself, and cannot drop
		// its supplementary groups in the namespace: refuse rather than
		// hand the server (a docker group, say) to it.
		if gs, err := os.Getgroups(); err == nil {
			for _, g := range gs {
				if g != os.Getgid() {
					return nil, nil, fmt.Errorf("sandbox: the gateway's user has supplementary groups (%d) the server would keep; run the gateway as a user without them", g)
				}
			}
		}
		// An unprivileged gateway can map only itself.
		attr.UidMappings = []syscall.SysProcIDMap{{ContainerID: spec.UID, HostID: os.Getuid(), Size: 1}}
		attr.GidMappings = []syscall.SysProcIDMap{{ContainerID: spec.GID, HostID: os.Getgid(), Size: 1}}
		attr.Credential = &syscall.Credential{Uid: uint32(spec.UID), Gid: uint32(spec.GID), NoSetGroups: true}
		// What the init needs of its namespaces (its own mounts, the
		// loopback interface), as ambient capabilities of the user
		// namespace alone; it clears them before it execs the server.
		attr.AmbientCaps = []uintptr{unix.CAP_SYS_ADMIN, unix.CAP_NET_ADMIN}
	}
	cmd.SysProcAttr = attr
	if !spec.Egress {
		return cmd, nil, nil
	}
	eg, err := pairFor()
	if err != nil {
		return nil, nil, err
	}
	cmd.ExtraFiles = []*os.File{eg.child} // the init's descriptor 3
	return cmd, eg, nil
}

// Main runs the init when this process is one (and never returns then);
// otherwise it returns at once. Call it first thing in main (and in
// TestMain of packages whose tests launch sandboxed servers).
func Main() {
	if len(os.Args) == 0 || os.Args[0] != initArg {
		return
	}
	spec := os.Getenv(specEnv)
	var s Spec
	if err := json.Unmarshal([]byte(spec), &s); err != nil {
		fail("the spec: %v", err)
	}
	if err := enter(&s); err != nil {
		fail("%v", err)
	}
	fail("exec returned")
}

func fail(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "portcullis sandbox: "+format+"\n", a...)
	os.Exit(126)
}

// DefaultReadOnly are the system paths a server may read (the libraries,
// the loader, certificates, time zones, name resolution).
var DefaultReadOnly = []string{"/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin",
	"/etc/ssl", "/etc/ca-certificates", "/etc/alternatives", "/etc/ld.so.cache", "/etc/localtime",
	"/etc/hosts", "/etc/resolv.conf", "/etc/nsswitch.conf", "/etc/passwd", "/etc/group", "/usr/share/zoneinfo"}

// DefaultFiles are the devices a server may use.
var DefaultFiles = []string{"/dev/null", "/dev/zero", "/dev/urandom", "/dev/random", "/dev/full"}

// CodePaths are the paths a server's code lives in, to be readable: for
// the executable and each absolute path among the arguments that is a
// file, its npm node_modules root, or its package's root (the nearest
// folder above it with a package.json, pyproject.toml, setup.py or
// go.mod, below any home or system folder), or the file alone. A folder
// among the arguments is not granted: the configuration says what a
// server may read beyond its code (sandbox.read_only, read_write).
func CodePaths(path string, args []string) []string {
	var out []string
	add := func(p string) {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			p = r
		}
		st, err := os.Stat(p)
		if err != nil || st.IsDir() {
			return
		}
		d := p
		if i := strings.Index(p, "/node_modules/"); i >= 0 {
			d = p[:i+len("/node_modules")]
		} else if root := packageRoot(filepath.Dir(p)); root != "" {
			d = root
		}
		if !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	add(path)
	for _, a := range args {
		if filepath.IsAbs(a) {
			add(a)
		}
	}
	return out
}

// packageRoot is the nearest folder at or above dir holding a package's
// manifest, never a home, the root or a system folder ("": none).
func packageRoot(dir string) string {
	home, _ := os.UserHomeDir()
	for d := dir; ; d = filepath.Dir(d) {
		if d == "/" || d == home || filepath.Dir(d) == "/" || strings.HasPrefix(d+"/", "/etc/") || d == "/home" {
			return ""
		}
		for _, m := range []string{"package.json", "pyproject.toml", "setup.py", "go.mod"} {
			if _, err := os.Stat(filepath.Join(d, m)); err == nil {
				return d
			}
		}
	}
}

// Within reports whether path is dir or inside it.
func Within(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

// CheckPins hashes each pinned file and compares it with its pin.
func CheckPins(pins map[string]string) error {
	for p, want := range pins {
		f, err := os.Open(p)
		if err != nil {
			return fmt.Errorf("pinned file %s: %w", p, err)
		}
		h := sha256.New()
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return fmt.Errorf("pinned file %s: %w", p, err)
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != want {
			return fmt.Errorf("pinned file %s: sha256 %s, pinned %s: refusing to launch", p, got, want)
		}
	}
	return nil
}

// Kernel describes what this kernel lets the built-in sandbox enforce:
// Landlock's ABI, user namespaces and the cgroup hierarchy (limits are
// rlimits, per process; cgroup v2 controllers are not used).
func Kernel() (landlockABI int, userns, cgroups string) {
	userns = "available"
	if _, err := os.Stat("/proc/self/ns/user"); err != nil {
		userns = "not available"
	} else if b, err := os.ReadFile("/proc/sys/user/max_user_namespaces"); err == nil && strings.TrimSpace(string(b)) == "0" {
		userns = "disabled (user.max_user_namespaces = 0)"
	}
	cgroups = "v1 or none"
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		cgroups = "v2"
	}
	return LandlockABI(), userns, cgroups
}
