package sandbox

import (
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// The way out of a sandbox with egress: its network namespace holds only
// the loopback interface, where the init listens on EgressPort before it
// execs the server; the listener is handed to the gateway over a socket
// pair (the init's descriptor 3), so every connection the server opens
// to it is accepted by the gateway, outside the namespace, which decides
// where it may lead (internal/egress). Landlock lets the server connect
// to that port alone.

// EgressPort is the port of the proxy in a sandbox's own loopback (any
// port would do: the namespace is the server's alone).
const EgressPort = 3128

// egressFD is the init's end of the socket pair.
const egressFD = 3

// Egress is the gateway's end of a launch with egress.
type Egress struct {
	parent, child *os.File
}

// pairFor gives cmd the init's end of a new socket pair.
func pairFor() (*Egress, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("sandbox: egress socket pair: %w", err)
	}
	return &Egress{parent: os.NewFile(uintptr(fds[0]), "egress"), child: os.NewFile(uintptr(fds[1]), "egress-init")}, nil
}

// Listener returns, once the command has started, the listener the init
// opened in the server's namespace: the gateway accepts the server's
// connections on it. An init that fails first gives an error.
func (e *Egress) Listener(timeout time.Duration) (net.Listener, error) {
	e.child.Close() // the init has its own copy: EOF when it dies
	c, err := net.FileConn(e.parent)
	if err != nil {
		return nil, fmt.Errorf("sandbox: egress: %w", err)
	}
	defer c.Close()
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return nil, errors.New("sandbox: egress: not a UNIX socket")
	}
	uc.SetReadDeadline(time.Now().Add(timeout))
	buf, oob := make([]byte, 1), make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := uc.ReadMsgUnix(buf, oob)
	if err != nil {
		return nil, fmt.Errorf("sandbox: egress: the server's listener never came: %w", err)
	}
	if n != 1 || oobn == 0 {
		return nil, errors.New("sandbox: egress: the init ended before it opened the server's way out")
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return nil, errors.New("sandbox: egress: no listener received")
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return nil, errors.New("sandbox: egress: no listener received")
	}
	f := os.NewFile(uintptr(fds[0]), "egress-listener")
	defer f.Close()
	ln, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("sandbox: egress: %w", err)
	}
	return ln, nil
}

// Close releases the gateway's end (a launch that failed, or is over).
func (e *Egress) Close() {
	e.parent.Close()
	e.child.Close()
}

// openEgress, in the init (root of its namespaces), brings the loopback
// interface up, listens on EgressPort and sends the listener to the
// gateway; no descriptor of it is left for the server.
func openEgress() error {
	defer unix.Close(egressFD)
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(s)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(s, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("loopback: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(s, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("loopback up: %w", err)
	}
	l, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(l)
	if err := unix.Bind(l, &unix.SockaddrInet4{Port: EgressPort, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		return fmt.Errorf("bind: %w", err)
	}
	if err := unix.Listen(l, 128); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	if err := unix.Sendmsg(egressFD, []byte{1}, unix.UnixRights(l), nil, 0); err != nil {
		return fmt.Errorf("hand over: %w", err)
	}
	return nil
}

// ProxyEnv are the variables that point a server's HTTP clients at the
// way out (Node's built-in fetch reads them only when NODE_USE_ENV_PROXY
// is set).
func ProxyEnv() []string {
	u := fmt.Sprintf("http://127.0.0.1:%d", EgressPort)
	return []string{"HTTP_PROXY=" + u, "HTTPS_PROXY=" + u, "http_proxy=" + u, "https_proxy=" + u, "ALL_PROXY=" + u, "all_proxy=" + u, "NODE_USE_ENV_PROXY=1"}
}
