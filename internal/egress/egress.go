// Package egress is the only way out of a sandboxed tool server's network
// namespace: an HTTP proxy (CONNECT tunnels, and plain HTTP requests in
// absolute form) that the gateway serves on the listener the sandbox
// hands it (internal/sandbox). It lets through only the destinations on
// the upstream's allow-list and reports every connection, allowed or
// not, to its Record function (the gateway audits them and raises an
// alert on a refused destination).
//
// The proxy resolves names itself (the namespace has no DNS) and dials
// the address it checked, so a name cannot be rebound between the check
// and the connection. A name on the list never leads to a loopback,
// link-local (cloud metadata), multicast or unspecified address: those
// are reached only by listing the address itself.
package egress

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Rule is one allowed destination.
type Rule struct {
	// Host is a name (lower case), or "*.suffix" for every name under
	// suffix (not suffix itself); empty when Prefix is set.
	Host   string
	Prefix netip.Prefix // an address or network
	Port   uint16
}

// String is the rule as configured.
func (r Rule) String() string {
	h := r.Host
	if r.Prefix.IsValid() {
		h = r.Prefix.String()
		if r.Prefix.IsSingleIP() {
			h = r.Prefix.Addr().String()
		}
		if r.Prefix.Addr().Is6() {
			h = "[" + h + "]"
		}
	}
	return h + ":" + strconv.Itoa(int(r.Port))
}

// ParseRule reads "HOST:PORT", where HOST is a name, "*.name", an address
// or a network in CIDR form (IPv6 in brackets), and PORT a number.
func ParseRule(s string) (Rule, error) {
	i := strings.LastIndexByte(s, ':')
	if i <= 0 {
		return Rule{}, fmt.Errorf("egress %q: want HOST:PORT", s)
	}
	host, port := s[:i], s[i+1:]
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return Rule{}, fmt.Errorf("egress %q: the port must be a number from 1 to 65535", s)
	}
	r := Rule{Port: uint16(p)}
	if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		host = host[1 : len(host)-1]
	}
	if pf, err := netip.ParsePrefix(host); err == nil {
		r.Prefix = pf.Masked()
		return r, nil
	}
	if a, err := netip.ParseAddr(host); err == nil {
		r.Prefix = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		return r, nil
	}
	name := strings.TrimSuffix(strings.ToLower(host), ".")
	if !validName(strings.TrimPrefix(name, "*.")) || strings.Contains(strings.TrimPrefix(name, "*."), "*") {
		return Rule{}, fmt.Errorf("egress %q: %q is not a host name, *.name, address or network", s, host)
	}
	r.Host = name
	return r, nil
}

// ParseRules reads every rule, reporting the first bad one.
func ParseRules(ss []string) ([]Rule, error) {
	out := make([]Rule, 0, len(ss))
	for _, s := range ss {
		r, err := ParseRule(s)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// validName reports whether s is a DNS name of letters, digits, hyphens
// and underscores in dot-separated labels.
func validName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for _, c := range l {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// match returns the rule that allows host:port (a name or an address),
// if one does.
func match(rules []Rule, host string, port uint16) (Rule, bool) {
	addr, err := netip.ParseAddr(host)
	isAddr := err == nil
	for _, r := range rules {
		if r.Port != port {
			continue
		}
		switch {
		case r.Prefix.IsValid():
			if isAddr && r.Prefix.Contains(addr.Unmap()) {
				return r, true
			}
		case isAddr:
		case strings.HasPrefix(r.Host, "*."):
			if strings.HasSuffix(host, r.Host[1:]) {
				return r, true
			}
		case r.Host == host:
			return r, true
		}
	}
	return Rule{}, false
}

// reachable reports whether a name's rule may lead to address a.
func reachable(a netip.Addr) bool {
	a = a.Unmap()
	return !(a.IsLoopback() || a.IsUnspecified() || a.IsMulticast() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() || a.IsInterfaceLocalMulticast())
}

// Outcomes of a connection.
const (
	Allowed = "allowed" // the destination is on the list and was reached
	Refused = "refused" // not on the list (an alert)
	Failed  = "failed"  // on the list, but unreachable, or a bad request
	Closed  = "closed"  // an allowed connection ended (its byte counts)
)

// Event is one connection's record.
type Event struct {
	Time    time.Time
	Outcome string
	Method  string // CONNECT, or the plain HTTP request's method
	Host    string // as asked
	Port    uint16
	Addr    string // the address dialled (allowed, closed)
	Rule    string // the rule that allowed it
	Reason  string // why refused or failed
	// Sent and Received are the bytes the server sent and received
	// (closed).
	Sent, Received int64
	Duration       time.Duration
}

// Proxy is one sandboxed launch's way out.
type Proxy struct {
	Rules  []Rule
	Record func(Event)
	// Resolver resolves names (nil: the system's).
	Resolver *net.Resolver
	// DialTimeout bounds resolution and connection (0: 10 s).
	DialTimeout time.Duration
	// MaxConns bounds connections at once (0: 64).
	MaxConns int

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	done  bool
	ln    net.Listener
}

// Bounds.
const (
	maxHeader     = 64 << 10
	headerTimeout = 10 * time.Second
)

// Serve accepts the server's connections on ln until Close.
func (p *Proxy) Serve(ln net.Listener) error {
	p.mu.Lock()
	if p.done {
		p.mu.Unlock()
		ln.Close()
		return net.ErrClosed
	}
	p.ln, p.conns = ln, map[net.Conn]struct{}{}
	p.mu.Unlock()
	maxc := p.MaxConns
	if maxc == 0 {
		maxc = 64
	}
	slots := make(chan struct{}, maxc)
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		if !p.track(c, true) {
			c.Close()
			return net.ErrClosed
		}
		select {
		case slots <- struct{}{}:
			go func() {
				defer func() { <-slots; p.track(c, false); c.Close() }()
				p.handle(c)
			}()
		default:
			p.refuse(c, http.StatusServiceUnavailable, Event{Time: time.Now(), Outcome: Failed, Reason: fmt.Sprintf("more than %d connections at once", maxc)})
			p.track(c, false)
			c.Close()
		}
	}
}

func (p *Proxy) track(c net.Conn, add bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if add {
		if p.done {
			return false
		}
		p.conns[c] = struct{}{}
	} else {
		delete(p.conns, c)
	}
	return true
}

// Close stops the proxy and ends every connection through it.
func (p *Proxy) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done = true
	if p.ln != nil {
		p.ln.Close()
	}
	for c := range p.conns {
		c.Close()
	}
}

// capped bounds what the request's header may take.
type capped struct {
	r  io.Reader
	n  int
	on bool
}

func (c *capped) Read(b []byte) (int, error) {
	if !c.on {
		return c.r.Read(b)
	}
	if c.n <= 0 {
		return 0, errors.New("request header too large")
	}
	b = b[:min(len(b), c.n)]
	n, err := c.r.Read(b)
	c.n -= n
	return n, err
}

func (p *Proxy) handle(c net.Conn) {
	start := time.Now()
	cr := &capped{r: c, n: maxHeader, on: true}
	br := bufio.NewReaderSize(cr, 4096)
	c.SetReadDeadline(start.Add(headerTimeout))
	req, err := http.ReadRequest(br)
	if err != nil {
		p.refuse(c, http.StatusBadRequest, Event{Time: start, Outcome: Failed, Reason: "unreadable request: " + err.Error()})
		return
	}
	cr.on = false
	c.SetReadDeadline(time.Time{})
	ev := Event{Time: start, Method: req.Method}
	var hostport string
	switch {
	case req.Method == http.MethodConnect:
		hostport = req.RequestURI
	case req.URL.IsAbs() && req.URL.Scheme == "http":
		hostport = req.URL.Host
		if req.URL.Port() == "" {
			hostport = net.JoinHostPort(req.URL.Hostname(), "80")
		}
	default:
		ev.Outcome, ev.Reason = Failed, "not a CONNECT or an absolute http:// request (HTTPS goes through CONNECT)"
		p.refuse(c, http.StatusBadRequest, ev)
		return
	}
	host, port, err := net.SplitHostPort(hostport)
	pn, perr := strconv.ParseUint(port, 10, 16)
	if err != nil || perr != nil || pn == 0 {
		ev.Outcome, ev.Reason, ev.Host = Failed, "bad destination", hostport
		p.refuse(c, http.StatusBadRequest, ev)
		return
	}
	ev.Host, ev.Port = strings.TrimSuffix(strings.ToLower(host), "."), uint16(pn)
	if _, err := netip.ParseAddr(ev.Host); err != nil && !validName(ev.Host) {
		ev.Outcome, ev.Reason = Failed, "bad destination"
		p.refuse(c, http.StatusBadRequest, ev)
		return
	}
	r, ok := match(p.Rules, ev.Host, ev.Port)
	if !ok {
		ev.Outcome, ev.Reason = Refused, "not on the upstream's egress allow-list"
		p.refuse(c, http.StatusForbidden, ev)
		return
	}
	ev.Rule = r.String()
	up, err := p.dial(ev.Host, ev.Port, r)
	if err != nil {
		ev.Outcome, ev.Reason = Failed, err.Error()
		p.refuse(c, http.StatusBadGateway, ev)
		return
	}
	defer up.Close()
	ev.Outcome, ev.Addr = Allowed, up.RemoteAddr().String()
	p.record(ev)
	if !p.track(up, true) {
		return
	}
	defer p.track(up, false)

	var sent, received atomic.Int64
	if req.Method == http.MethodConnect {
		if _, err := io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
			return
		}
		// What the client sent after its request (a TLS hello) first.
		if n := br.Buffered(); n > 0 {
			b, _ := br.Peek(n)
			m, err := up.Write(b)
			sent.Add(int64(m))
			if err != nil {
				return
			}
			br.Discard(n)
		}
		pipe(c, up, &sent, &received)
	} else {
		for _, h := range []string{"Proxy-Connection", "Proxy-Authorization", "Connection", "Keep-Alive", "Te", "Trailer", "Upgrade"} {
			req.Header.Del(h)
		}
		req.Close = true // one request a connection: the response ends it
		cw := &counter{w: up, n: &sent}
		if err := req.Write(cw); err == nil {
			io.Copy(&counter{w: c, n: &received}, up)
		}
	}
	ev.Outcome, ev.Sent, ev.Received, ev.Duration = Closed, sent.Load(), received.Load(), time.Since(start)
	p.record(ev)
}

// pipe copies both ways between the server's connection c and up until
// both ends are done.
func pipe(c, up net.Conn, sent, received *atomic.Int64) {
	done := make(chan struct{})
	go func() {
		io.Copy(&counter{w: up, n: sent}, c)
		if tc, ok := up.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
		close(done)
	}()
	io.Copy(&counter{w: c, n: received}, up)
	if tc, ok := c.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
	<-done
}

type counter struct {
	w io.Writer
	n *atomic.Int64
}

func (c *counter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n.Add(int64(n))
	return n, err
}

// dial reaches host:port as rule r allows: an address within its prefix,
// or a name's addresses that lead off this host.
func (p *Proxy) dial(host string, port uint16, r Rule) (net.Conn, error) {
	timeout := p.DialTimeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{a.Unmap()}
	} else {
		res := p.Resolver
		if res == nil {
			res = net.DefaultResolver
		}
		found, err := res.LookupNetIP(ctx, "ip", host)
		if err != nil {
			return nil, fmt.Errorf("resolving %s: %w", host, err)
		}
		for _, a := range found {
			if reachable(a) {
				addrs = append(addrs, a.Unmap())
			}
		}
		if len(addrs) == 0 {
			return nil, fmt.Errorf("%s resolves to no address a name may lead to (loopback, link-local and the like are reached only by listing the address)", host)
		}
	}
	var d net.Dialer
	var last error
	for _, a := range addrs {
		if r.Prefix.IsValid() && !r.Prefix.Contains(a) {
			continue
		}
		c, err := d.DialContext(ctx, "tcp", netip.AddrPortFrom(a, port).String())
		if err == nil {
			return c, nil
		}
		last = err
	}
	if last == nil {
		last = errors.New("no address to dial")
	}
	return nil, last
}

func (p *Proxy) record(e Event) {
	if p.Record != nil {
		p.Record(e)
	}
}

// refuse answers the server with status and why, and records e.
func (p *Proxy) refuse(c net.Conn, status int, e Event) {
	p.record(e)
	dest := net.JoinHostPort(e.Host, strconv.Itoa(int(e.Port)))
	msg := fmt.Sprintf("portcullis egress: %s: %s\n", dest, e.Reason)
	if e.Host == "" {
		msg = "portcullis egress: " + e.Reason + "\n"
	}
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
		status, http.StatusText(status), len(msg), msg)
}
