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
	"slices"
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

// nonGlobal are the networks a name on the list never leads to (list the
// address or network itself to reach one): private and shared space,
// the IETF's and benchmarking ranges, cloud metadata addresses outside
// link-local, and the IPv6 forms that embed an IPv4 address.
var nonGlobal = func() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range []string{
		"0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24",
		"192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
		"::/96", "::1/128", "64:ff9b::/96", "64:ff9b:1::/48", "100::/64", "2001::/32", "2001:db8::/32", "2002::/16", "fc00::/7", "fe80::/10", "ff00::/8",
	} {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}()

// global reports whether address a may be reached through a name: not in
// a non-global network, and not one of this host's own addresses.
func global(a netip.Addr, own []netip.Addr) bool {
	a = a.Unmap()
	for _, p := range nonGlobal {
		if p.Contains(a) {
			return false
		}
	}
	return !slices.Contains(own, a)
}

// ownAddrs are the host's interface addresses.
func ownAddrs() []netip.Addr {
	as, _ := net.InterfaceAddrs()
	var out []netip.Addr
	for _, a := range as {
		if pf, err := netip.ParsePrefix(a.String()); err == nil {
			out = append(out, pf.Addr().Unmap())
		}
	}
	return out
}

// allowedAddr reports whether a name's rule may lead to address a: a
// global address, or one a network or address rule of the same port
// covers (an internal service is listed by its network and its name).
func allowedAddr(rules []Rule, a netip.Addr, port uint16, own []netip.Addr) bool {
	if global(a, own) {
		return true
	}
	for _, r := range rules {
		if r.Prefix.IsValid() && r.Port == port && r.Prefix.Contains(a.Unmap()) {
			return true
		}
	}
	return false
}

// Outcomes of a connection.
const (
	Allowed = "allowed" // the destination is on the list and was reached
	Refused = "refused" // not on the list (an alert)
	Failed  = "failed"  // on the list, but unreachable, or a bad request
	Closed  = "closed"  // an allowed connection ended (its byte counts)
	// Suppressed summarises the connections not recorded one by one
	// beyond the launch's event rate (Reason counts them).
	Suppressed = "suppressed"
	// Cut: the proxy stopped serving the launch (too many bad requests).
	Cut = "cut"
)

// Event is one connection's record.
type Event struct {
	Time time.Time
	// Launch identifies the launch (one server process) the proxy serves.
	Launch  string
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
	// Launch names the launch in every event.
	Launch string
	// Idle ends a connection nothing crossed for this long (0: 10 min).
	Idle time.Duration

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	done  bool
	ln    net.Listener

	// The launch's event budget: a token bucket, and what it left out.
	evMu       sync.Mutex
	tokens     float64
	last       time.Time
	suppressed map[string]int
	bad        int
}

// Bounds.
const (
	maxHeader     = 64 << 10
	headerTimeout = 10 * time.Second
	// eventRate and eventBurst bound the events one launch records one by
	// one (a server cannot flood the audit log through its way out); the
	// rest are counted in a Suppressed event.
	eventRate  = 5.0
	eventBurst = 50.0
	// maxBad is how many malformed requests end a launch's way out (an
	// HTTP client never sends one).
	maxBad = 256
	// maxField bounds what an event keeps of a destination.
	maxField = 255
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
	backoff := 5 * time.Millisecond
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || p.Closed() {
				return err
			}
			// Out of descriptors, say: wait and try again, as net/http does.
			time.Sleep(backoff)
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
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

// Closed reports whether the proxy was closed (or cut).
func (p *Proxy) Closed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.done
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

// Close stops the proxy and ends every connection through it; what the
// event budget left out is recorded then.
func (p *Proxy) Close() {
	p.mu.Lock()
	was := p.done
	p.done = true
	if p.ln != nil {
		p.ln.Close()
	}
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	if !was {
		p.flush(time.Now())
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
		p.refuse(c, http.StatusBadRequest, Event{Time: start, Outcome: Failed, Reason: "unreadable request"})
		p.badRequest()
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
		p.badRequest()
		return
	}
	host, port, err := net.SplitHostPort(hostport)
	pn, perr := strconv.ParseUint(port, 10, 16)
	if err != nil || perr != nil || pn == 0 {
		ev.Outcome, ev.Reason, ev.Host = Failed, "bad destination", truncate(hostport)
		p.refuse(c, http.StatusBadRequest, ev)
		p.badRequest()
		return
	}
	ev.Host, ev.Port = strings.TrimSuffix(strings.ToLower(host), "."), uint16(pn)
	if _, err := netip.ParseAddr(ev.Host); err != nil && !validName(ev.Host) {
		ev.Outcome, ev.Reason, ev.Host = Failed, "bad destination", truncate(ev.Host)
		p.refuse(c, http.StatusBadRequest, ev)
		p.badRequest()
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
	if !p.track(up, true) {
		return // closing
	}
	defer p.track(up, false)
	ev.Outcome, ev.Addr = Allowed, up.RemoteAddr().String()
	p.record(ev)
	var sent, received atomic.Int64
	defer p.watchdog(c, up, &sent, &received)()
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

// watchdog ends a and b when no byte crossed between them (the counts
// stood still) for p.Idle; stop ends the watch.
func (p *Proxy) watchdog(a, b net.Conn, sent, received *atomic.Int64) (stop func()) {
	idle := p.Idle
	if idle == 0 {
		idle = 10 * time.Minute
	}
	done := make(chan struct{})
	go func() {
		tick := time.NewTicker(max(idle/4, 5*time.Millisecond))
		defer tick.Stop()
		seen, since := int64(-1), time.Now()
		for {
			select {
			case <-done:
				return
			case now := <-tick.C:
				if n := sent.Load() + received.Load(); n != seen {
					seen, since = n, now
				} else if now.Sub(since) >= idle {
					a.Close()
					b.Close()
					return
				}
			}
		}
	}()
	return func() { close(done) }
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
		// A dotted name is resolved fully qualified: no search domain
		// (Kubernetes' ndots:5) leads it elsewhere. A single label is
		// what the operator listed, resolved as the host resolves it.
		fq := host
		if strings.Contains(host, ".") {
			fq += "."
		}
		found, err := res.LookupNetIP(ctx, "ip", fq)
		if err != nil {
			return nil, errors.New("the name does not resolve")
		}
		own := ownAddrs()
		for _, a := range found {
			if allowedAddr(p.Rules, a, port, own) {
				addrs = append(addrs, a.Unmap())
			}
		}
		if len(addrs) == 0 {
			return nil, errors.New("the name resolves to no address a name may lead to (private, loopback, link-local, this host's own: list the address or network to reach one)")
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
		return nil, errors.New("no address to dial")
	}
	return nil, errors.New("unreachable") // the dialler's error quotes nothing the server sent, but stays out of the record
}

// record reports e within the launch's event budget; beyond it, e is
// counted, and the counts are reported as one Suppressed event once the
// budget allows (or at Close).
func (p *Proxy) record(e Event) {
	if p.Record == nil {
		return
	}
	e.Launch = p.Launch
	p.evMu.Lock()
	if p.last.IsZero() {
		p.tokens, p.last = eventBurst, e.Time
	}
	if el := e.Time.Sub(p.last).Seconds(); el > 0 {
		p.tokens = min(eventBurst, p.tokens+el*eventRate)
		p.last = e.Time
	}
	if p.tokens < 1 {
		if p.suppressed == nil {
			p.suppressed = map[string]int{}
		}
		p.suppressed[e.Outcome]++
		p.evMu.Unlock()
		return
	}
	p.tokens--
	sum := p.summary(e.Time)
	p.evMu.Unlock()
	if sum != nil {
		p.Record(*sum)
	}
	p.Record(e)
}

// summary takes the counts left out so far as an event (nil: none);
// p.evMu held.
func (p *Proxy) summary(now time.Time) *Event {
	if len(p.suppressed) == 0 {
		return nil
	}
	var parts []string
	n := 0
	for _, o := range []string{Allowed, Closed, Refused, Failed} {
		if k := p.suppressed[o]; k > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", k, o))
			n += k
		}
	}
	p.suppressed = nil
	return &Event{Time: now, Launch: p.Launch, Outcome: Suppressed, Reason: fmt.Sprintf("%d connection events beyond %g a second not recorded one by one: %s", n, eventRate, strings.Join(parts, ", "))}
}

// flush reports what the budget left out.
func (p *Proxy) flush(now time.Time) {
	p.evMu.Lock()
	sum := p.summary(now)
	p.evMu.Unlock()
	if sum != nil && p.Record != nil {
		p.Record(*sum)
	}
}

// badRequest counts a malformed request; maxBad of them end the launch's
// way out.
func (p *Proxy) badRequest() {
	p.evMu.Lock()
	p.bad++
	cut := p.bad == maxBad
	p.evMu.Unlock()
	if cut {
		if p.Record != nil {
			p.Record(Event{Time: time.Now(), Launch: p.Launch, Outcome: Cut, Reason: fmt.Sprintf("%d malformed proxy requests: the launch's way out is closed", maxBad)})
		}
		go p.Close()
	}
}

func truncate(s string) string {
	if len(s) > maxField {
		return s[:maxField]
	}
	return s
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
