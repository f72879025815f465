package sandbox

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portcullis-dev/portcullis/internal/egress"
	"github.com/portcullis-dev/portcullis/internal/sandbox/internal/int80"
)

// The escape suite: this test binary, re-executed as the sandboxed server
// ("sandbox-probe ATTEMPT"), tries one escape and prints what happened;
// every attempt must fail, and the allowed paths must work.

func TestMain(m *testing.M) {
	Main()
	if len(os.Args) > 1 && os.Args[0] == "sandbox-probe" {
		probe(os.Args[1], os.Args[2:])
		return
	}
	code := m.Run()
	if probeOnce.path != "" {
		os.RemoveAll(filepath.Dir(probeOnce.path))
	}
	os.Exit(code)
}

// probe tries one thing and prints "ok" or "refused: why".
func probe(what string, args []string) {
	var err error
	switch what {
	case "read":
		_, err = os.ReadFile(args[0])
	case "write":
		err = os.WriteFile(args[0], []byte("x"), 0o600)
	case "connect":
		var c net.Conn
		c, err = net.DialTimeout("tcp", args[0], 2*time.Second)
		if err == nil {
			c.Close()
		}
	case "ptrace":
		err = syscall.PtraceAttach(1)
	case "mount":
		err = syscall.Mount("tmpfs", "/tmp", "tmpfs", 0, "")
	case "setuid-root":
		err = syscall.Setuid(0)
		if err == nil && os.Getuid() != 0 {
			err = fmt.Errorf("uid %d", os.Getuid())
		}
	case "i386-unshare":
		// unshare(CLONE_NEWUSER) through the i386 interface: seccomp
		// must kill the process (nothing is printed then).
		r := int80.Call(310, 0x10000000, 0)
		fmt.Printf("ok %d\n", int64(r))
		return
	case "clone-newuser":
		pid, _, e := syscall.RawSyscall6(syscall.SYS_CLONE, syscall.CLONE_NEWUSER|uintptr(syscall.SIGCHLD), 0, 0, 0, 0, 0)
		if e != 0 {
			err = e
		} else if pid == 0 {
			syscall.RawSyscall(syscall.SYS_EXIT_GROUP, 0, 0, 0) // the child
		}
	case "io_uring":
		_, _, e := syscall.RawSyscall(425, 8, 0, 0) // io_uring_setup
		if e != syscall.EFAULT && e != 0 {
			err = e
		}
	case "connect-unix":
		var c net.Conn
		c, err = net.DialTimeout("unix", args[0], 2*time.Second)
		if err == nil {
			c.Close()
		}
	case "proxy-get":
		// Through the way out, as an HTTP client configured by the
		// environment would go.
		pu, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", EgressPort))
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(pu)}}
		var resp *http.Response
		if resp, err = c.Get(args[0]); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("%s: %s", resp.Status, b)
			} else {
				fmt.Printf("ok %s\n", b)
				return
			}
		}
	case "mptcp":
		fd, e := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 262) // IPPROTO_MPTCP
		if e == nil {
			syscall.Close(fd)
		}
		err = e
	case "fds":
		var open []string
		for fd := 3; fd < 256; fd++ {
			if _, _, e := syscall.RawSyscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_GETFD, 0); e == 0 {
				open = append(open, fmt.Sprint(fd))
			}
		}
		fmt.Printf("fds %s\n", strings.Join(open, " "))
		return
	case "uid":
		fmt.Printf("uid %d\n", os.Getuid())
		return
	case "env":
		fmt.Println(strings.Join(os.Environ(), "\n"))
		return
	case "fork-bomb":
		var n int
		for n = 0; n < 2000; n++ {
			c := exec.Command("/bin/sleep", "5")
			if err = c.Start(); err != nil {
				break
			}
		}
		if err == nil {
			err = nil
			fmt.Println("ok")
			return
		}
		fmt.Printf("refused after %d: %v\n", n, err)
		return
	case "memory":
		var keep [][]byte
		for i := 0; i < 64; i++ { // 64 × 64 MiB
			b := make([]byte, 64<<20)
			for j := 0; j < len(b); j += 4096 {
				b[j] = 1
			}
			keep = append(keep, b)
		}
		fmt.Println("ok", len(keep))
		return
	}
	if err != nil {
		fmt.Printf("refused: %v\n", err)
		return
	}
	fmt.Println("ok")
}

// sandboxed runs the probe in the sandbox with the given read-write
// directory, and returns its output.
func sandboxed(t *testing.T, rw string, extra func(*Spec), what string, args ...string) string {
	t.Helper()
	self := probeBinary(t)
	s := Spec{Path: self, Args: append([]string{"sandbox-probe", what}, args...), Env: []string{"ONLY=this"},
		ReadOnly: append(append([]string(nil), DefaultReadOnly...), CodePaths(self, nil)...), ReadWrite: []string{rw}, Files: DefaultFiles,
		MemoryBytes: 512 << 20, Processes: 64, OpenFiles: 256, UID: Unprivileged, GID: Unprivileged}
	if extra != nil {
		extra(&s)
	}
	return run(t, s, nil)
}

// runWith runs the probe what with the command adjusted by adjust.
func runWith(t *testing.T, rw string, adjust func(*exec.Cmd), what string) string {
	t.Helper()
	self := probeBinary(t)
	cmd, _, err := Command(Spec{Path: self, Args: []string{"sandbox-probe", what}, ReadOnly: append(append([]string(nil), DefaultReadOnly...), CodePaths(self, nil)...),
		ReadWrite: []string{rw}, Files: DefaultFiles, UID: Unprivileged, GID: Unprivileged})
	if err != nil {
		t.Fatal(err)
	}
	adjust(cmd)
	out, err := cmd.Output()
	if err != nil && len(out) == 0 {
		return fmt.Sprintf("failed: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// run runs s and returns its output; with s.Egress, through a proxy
// allowing rules.
func run(t *testing.T, s Spec, rules []string) string {
	t.Helper()
	cmd, eg, err := Command(s)
	if err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if eg != nil {
		defer eg.Close()
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if eg != nil {
		rs, err := egress.ParseRules(rules)
		if err != nil {
			t.Fatal(err)
		}
		ln, err := eg.Listener(10 * time.Second)
		if err != nil {
			cmd.Wait()
			return fmt.Sprintf("failed: %v: %s", err, errb.String())
		}
		p := &egress.Proxy{Rules: rs}
		go p.Serve(ln)
		defer p.Close()
	}
	if err := cmd.Wait(); err != nil && out.Len() == 0 {
		return fmt.Sprintf("failed: %v: %s", err, errb.String())
	}
	return strings.TrimSpace(out.String())
}

// The way out: only through the gateway's proxy, only to the listed
// destinations; the listed ones work.
func TestEgress(t *testing.T) {
	if _, err := os.Stat("/proc/self/ns/user"); err != nil {
		t.Skip("no user namespaces")
	}
	rw := t.TempDir()
	os.Chmod(rw, 0o777)
	os.Chmod(filepath.Dir(rw), 0o755)
	allowed := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "allowed") }))
	defer allowed.Close()
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "other") }))
	defer other.Close()
	rules := []string{strings.TrimPrefix(allowed.URL, "http://")}
	self := probeBinary(t)
	spec := func(what string, args ...string) Spec {
		return Spec{Path: self, Args: append([]string{"sandbox-probe", what}, args...), Egress: true,
			ReadOnly: append(append([]string(nil), DefaultReadOnly...), CodePaths(self, nil)...), ReadWrite: []string{rw}, Files: DefaultFiles,
			MemoryBytes: 512 << 20, Processes: 64, OpenFiles: 256, UID: Unprivileged, GID: Unprivileged}
	}
	for _, tc := range []struct {
		name, what, arg, want string
	}{
		{"a listed destination, through the proxy", "proxy-get", allowed.URL, "ok allowed"},
		{"a destination off the list (a second listener on loopback)", "proxy-get", other.URL, "refused: 403"},
		{"the listed destination, around the proxy", "connect", strings.TrimPrefix(allowed.URL, "http://"), "refused"},
		{"out, around the proxy", "connect", "1.1.1.1:443", "refused"},
		{"another port of the namespace's own loopback", "connect", "127.0.0.1:8080", "refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := run(t, spec(tc.what, tc.arg), rules); !strings.HasPrefix(got, tc.want) {
				t.Errorf("%q, want %s", got, tc.want)
			}
		})
	}
}

func TestEscapes(t *testing.T) {
	if _, err := os.Stat("/proc/self/ns/user"); err != nil {
		t.Skip("no user namespaces")
	}
	secretDir := t.TempDir() // stands for the gateway's data directory
	os.WriteFile(filepath.Join(secretDir, "signing.key"), []byte("secret"), 0o600)
	rw := t.TempDir()
	os.Chmod(rw, 0o777) // the unprivileged user's own folder
	os.Chmod(filepath.Dir(rw), 0o755)
	outside := t.TempDir()
	os.Chmod(outside, 0o777)
	os.Chmod(filepath.Dir(outside), 0o755)
	// Readable by anyone: only Landlock keeps the server from it.
	pub := t.TempDir()
	os.Chmod(pub, 0o755)
	os.Chmod(filepath.Dir(pub), 0o755)
	readable := filepath.Join(pub, "notes.txt")
	os.WriteFile(readable, []byte("x"), 0o644)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	os.Setenv("PORTCULLIS_PARENT_SECRET", "parent-env")
	// A host socket anyone may connect to, where host daemons keep theirs.
	sockDir, err := os.MkdirTemp("/run", "portcullis-test-")
	if err != nil {
		t.Skip(err)
	}
	defer os.RemoveAll(sockDir)
	os.Chmod(sockDir, 0o755)
	sock := filepath.Join(sockDir, "daemon.sock")
	ul, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ul.Close()
	os.Chmod(sock, 0o777)

	for _, tc := range []struct {
		name string
		what string
		args []string
		want string // prefix of the output
	}{
		{"read the data directory", "read", []string{filepath.Join(secretDir, "signing.key")}, "refused"},
		{"read /etc/shadow", "read", []string{"/etc/shadow"}, "refused"},
		{"read a world-readable file outside the read-only paths", "read", []string{readable}, "refused"},
		{"write outside the read-write paths", "write", []string{filepath.Join(outside, "x")}, "refused"},
		{"write /etc", "write", []string{"/etc/portcullis-escape"}, "refused"},
		{"connect to a loopback listener", "connect", []string{ln.Addr().String()}, "refused"},
		{"connect out", "connect", []string{"1.1.1.1:443"}, "refused"},
		{"ptrace", "ptrace", nil, "refused"},
		{"mount", "mount", nil, "refused"},
		{"become root", "setuid-root", nil, "refused"},
		{"fork bomb", "fork-bomb", nil, "refused"},
		{"exhaust memory", "memory", nil, "failed"},
		{"new namespaces through clone", "clone-newuser", nil, "refused"},
		{"io_uring", "io_uring", nil, "refused"},
		{"connect to a host UNIX socket under /run", "connect-unix", []string{sock}, "refused"},
		{"an MPTCP socket (Landlock does not govern it)", "mptcp", nil, "refused"},
		{"write the read-write path", "write", []string{filepath.Join(rw, "ok.txt")}, "ok"},
		{"read a system library path", "read", []string{"/etc/hosts"}, "ok"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := sandboxed(t, rw, nil, tc.what, tc.args...)
			if !strings.HasPrefix(got, tc.want) {
				t.Errorf("%s: %q, want %s", tc.name, got, tc.want)
			}
		})
	}
	if runtime.GOARCH == "amd64" {
		// The i386 interface: killed by seccomp, so nothing is printed.
		if got := sandboxed(t, rw, nil, "i386-unshare"); strings.HasPrefix(got, "ok") {
			t.Errorf("a system call through int 0x80 got through: %q", got)
		}
	}
	if got := sandboxed(t, rw, nil, "uid"); got != fmt.Sprintf("uid %d", Unprivileged) {
		t.Errorf("runs as %q", got)
	}
	// A descriptor the gateway holds without close-on-exec (from its own
	// supervisor) does not reach the server.
	leak, err := os.Open("/etc/hosts")
	if err != nil {
		t.Fatal(err)
	}
	defer leak.Close()
	if got := runWith(t, rw, func(cmd *exec.Cmd) { cmd.ExtraFiles = append(cmd.ExtraFiles, leak) }, "fds"); got != "fds" {
		t.Errorf("descriptors reach the server: %q", got)
	}
	if got := sandboxed(t, rw, nil, "env"); got != "ONLY=this" {
		t.Errorf("environment leaked: %q", got)
	}
	if _, err := os.Stat("/etc/portcullis-escape"); err == nil {
		os.Remove("/etc/portcullis-escape")
		t.Error("the sandbox wrote /etc")
	}
}

var probeOnce struct {
	path string
}

// probeBinary is this test binary, copied where the unprivileged user may
// execute it (go test builds in a folder only its owner may enter), as a
// tool server's code would be installed.
func probeBinary(t *testing.T) string {
	t.Helper()
	if probeOnce.path != "" {
		return probeOnce.path
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "portcullis-probe-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	b, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "probe")
	if err := os.WriteFile(p, b, 0o755); err != nil {
		t.Fatal(err)
	}
	probeOnce.path = p
	return p
}

// BenchmarkStart is a launch's cost: /bin/true run to its end, plainly
// and in the sandbox (namespaces, the init's re-exec, Landlock, seccomp).
func BenchmarkStart(b *testing.B) {
	b.Run("plain", func(b *testing.B) {
		for b.Loop() {
			if err := exec.Command("/bin/true").Run(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("sandboxed", func(b *testing.B) {
		if _, err := os.Stat("/proc/self/ns/user"); err != nil {
			b.Skip("no user namespaces")
		}
		for b.Loop() {
			cmd, _, err := Command(Spec{Path: "/bin/true", Args: []string{"true"}, ReadOnly: DefaultReadOnly, Files: DefaultFiles, UID: Unprivileged, GID: Unprivileged})
			if err != nil {
				b.Fatal(err)
			}
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("%v: %s", err, out)
			}
		}
	})
}

// Pinned files are checked inside the sandbox, right before the exec: a
// changed entry file stops the launch.
func TestPinsCheckedBeforeExec(t *testing.T) {
	if _, err := os.Stat("/proc/self/ns/user"); err != nil {
		t.Skip("no user namespaces")
	}
	rw := t.TempDir()
	os.Chmod(rw, 0o777)
	os.Chmod(filepath.Dir(rw), 0o755)
	entry := filepath.Join(filepath.Dir(probeBinary(t)), "entry.js")
	os.WriteFile(entry, []byte("console.log('hi')\n"), 0o644)
	sum := sha256.Sum256([]byte("console.log('hi')\n"))
	good := hex.EncodeToString(sum[:])
	if got := sandboxed(t, rw, func(s *Spec) { s.Pins, s.ReadOnly = map[string]string{entry: good}, append(s.ReadOnly, entry) }, "uid"); !strings.HasPrefix(got, "uid ") {
		t.Fatalf("a matching pin stopped the launch: %s", got)
	}
	os.WriteFile(entry, []byte("require('child_process').exec('curl evil')\n"), 0o644)
	if got := sandboxed(t, rw, func(s *Spec) { s.Pins, s.ReadOnly = map[string]string{entry: good}, append(s.ReadOnly, entry) }, "uid"); !strings.Contains(got, "refusing to launch") {
		t.Fatalf("a changed pinned file was launched: %s", got)
	}
}

// CodePaths grants a script's package, not the folder it happens to be in,
// nor a folder named among the arguments.
func TestCodePathsAreNarrow(t *testing.T) {
	home := t.TempDir()
	os.WriteFile(filepath.Join(home, "server.py"), nil, 0o644)
	os.WriteFile(filepath.Join(home, "id_ed25519"), nil, 0o600)
	pkg := filepath.Join(home, "tools", "srv")
	os.MkdirAll(filepath.Join(pkg, "lib"), 0o755)
	os.WriteFile(filepath.Join(pkg, "package.json"), []byte("{}"), 0o644)
	os.WriteFile(filepath.Join(pkg, "lib", "main.js"), nil, 0o644)
	got := CodePaths("/usr/bin/python3", []string{filepath.Join(home, "server.py"), "/etc/passwd", home, filepath.Join(pkg, "lib", "main.js")})
	for _, p := range got {
		if p == home || p == "/etc" || p == "/" {
			t.Errorf("a whole folder granted: %s (%v)", p, got)
		}
	}
	for _, want := range []string{filepath.Join(home, "server.py"), pkg} {
		if !slices.Contains(got, want) {
			t.Errorf("%s not granted: %v", want, got)
		}
	}
}

// An unprivileged gateway sandboxes too: the way-out suite and the
// server's user, run by this test binary as nobody (as root only: it
// takes setpriv and a user to become).
func TestUnprivilegedGateway(t *testing.T) {
	setpriv, err := exec.LookPath("setpriv")
	if os.Getuid() != 0 || err != nil || os.Getenv("PORTCULLIS_TEST_UNPRIVILEGED") != "" {
		t.Skip("needs root and setpriv to become an unprivileged gateway")
	}
	if _, err := os.Stat("/proc/self/ns/user"); err != nil {
		t.Skip("no user namespaces")
	}
	tmp := t.TempDir()
	os.Chmod(tmp, 0o777)
	os.Chmod(filepath.Dir(tmp), 0o755)
	cmd := exec.Command(setpriv, "--reuid", fmt.Sprint(Unprivileged), "--regid", fmt.Sprint(Unprivileged), "--clear-groups",
		probeBinary(t), "-test.run", "^TestEgress$", "-test.count", "1")
	cmd.Env = []string{"PORTCULLIS_TEST_UNPRIVILEGED=1", "TMPDIR=" + tmp, "PATH=/usr/bin:/bin"}
	cmd.Dir = tmp
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "PASS") {
		t.Fatalf("as an unprivileged gateway: %v\n%s", err, out)
	}
}
