package egress

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

func TestParseRule(t *testing.T) {
	for in, want := range map[string]string{
		"api.github.com:443":  "api.github.com:443",
		"API.GitHub.com.:443": "api.github.com:443",
		"*.example.com:8443":  "*.example.com:8443",
		"10.0.0.0/8:5432":     "10.0.0.0/8:5432",
		"10.1.2.3/8:5432":     "10.0.0.0/8:5432",
		"127.0.0.1:8080":      "127.0.0.1:8080",
		"[::1]:80":            "[::1]:80",
		"[fd00::/8]:443":      "[fd00::/8]:443",
	} {
		r, err := ParseRule(in)
		if err != nil {
			t.Errorf("%s: %v", in, err)
			continue
		}
		if r.String() != want {
			t.Errorf("%s: %s, want %s", in, r, want)
		}
	}
	for _, bad := range []string{"", "example.com", "example.com:", "example.com:0", "example.com:65536", "example.com:https",
		":443", "exa mple.com:443", "*.*.example.com:443", "ex*ample.com:443", "*:443", "-bad.com:443", "a..b:443", "[::1:80"} {
		if _, err := ParseRule(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestMatch(t *testing.T) {
	rules, err := ParseRules([]string{"api.example.com:443", "*.corp.example:443", "10.0.0.0/8:5432", "127.0.0.1:9000"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		host string
		port uint16
		ok   bool
	}{
		{"api.example.com", 443, true},
		{"api.example.com", 80, false},
		{"example.com", 443, false},
		{"x.api.example.com", 443, false},
		{"db.corp.example", 443, true},
		{"a.b.corp.example", 443, true},
		{"corp.example", 443, false},
		{"evilcorp.example", 443, false},
		{"10.20.30.40", 5432, true},
		{"10.20.30.40", 443, false},
		{"11.0.0.1", 5432, false},
		{"127.0.0.1", 9000, true},
		{"127.0.0.2", 9000, false},
		{"::ffff:127.0.0.1", 9000, true},
		{"localhost", 9000, false}, // a name never matches an address rule
	} {
		if _, ok := match(rules, tc.host, tc.port); ok != tc.ok {
			t.Errorf("%s:%d: %v, want %v", tc.host, tc.port, ok, tc.ok)
		}
	}
}

// harness runs a proxy on loopback with rules and collects its events.
type harness struct {
	p      *Proxy
	addr   string
	mu     sync.Mutex
	events []Event
}

func newHarness(t *testing.T, rules ...string) *harness {
	t.Helper()
	rs, err := ParseRules(rules)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{addr: ln.Addr().String()}
	h.p = &Proxy{Rules: rs, DialTimeout: 2 * time.Second, Record: func(e Event) {
		h.mu.Lock()
		h.events = append(h.events, e)
		h.mu.Unlock()
	}}
	go h.p.Serve(ln)
	t.Cleanup(h.p.Close)
	return h
}

func (h *harness) wait(t *testing.T, n int) []Event {
	t.Helper()
	for i := 0; i < 200; i++ {
		h.mu.Lock()
		if len(h.events) >= n {
			out := append([]Event(nil), h.events...)
			h.mu.Unlock()
			return out
		}
		h.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("fewer than %d events: %+v", n, h.events)
	return nil
}

// connect asks the proxy for a tunnel to dest and returns the status line
// and, when it is open, the connection.
func (h *harness) connect(t *testing.T, dest string) (string, net.Conn) {
	t.Helper()
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", dest, dest)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		c.Close()
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		c.Close()
		return resp.Status + ": " + string(b), nil
	}
	return resp.Status, c
}

// echo is a TCP listener that echoes one line.
func echo(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				line, _ := bufio.NewReader(c).ReadString('\n')
				io.WriteString(c, "echo "+line)
			}()
		}
	}()
	return ln.Addr().String()
}

func TestTunnel(t *testing.T) {
	allowed, other := echo(t), echo(t)
	h := newHarness(t, allowed)
	status, c := h.connect(t, allowed)
	if c == nil {
		t.Fatalf("allowed destination refused: %s", status)
	}
	io.WriteString(c, "hello\n")
	got, _ := bufio.NewReader(c).ReadString('\n')
	c.Close()
	if got != "echo hello\n" {
		t.Fatalf("through the tunnel: %q", got)
	}
	status, c = h.connect(t, other)
	if c != nil || !strings.HasPrefix(status, "403") || !strings.Contains(status, "allow-list") {
		t.Fatalf("a destination off the list: %s", status)
	}
	ev := h.wait(t, 3)
	var allowedEv, closedEv, refusedEv *Event
	for i := range ev {
		switch ev[i].Outcome {
		case Allowed:
			allowedEv = &ev[i]
		case Closed:
			closedEv = &ev[i]
		case Refused:
			refusedEv = &ev[i]
		}
	}
	if allowedEv == nil || allowedEv.Addr != allowed || allowedEv.Rule != allowed || allowedEv.Method != "CONNECT" {
		t.Errorf("allowed: %+v", allowedEv)
	}
	if closedEv == nil || closedEv.Sent != 6 || closedEv.Received != 11 {
		t.Errorf("closed: %+v", closedEv)
	}
	if refusedEv == nil || refusedEv.Host != "127.0.0.1" || refusedEv.Reason == "" {
		t.Errorf("refused: %+v", refusedEv)
	}
}

func TestPlainHTTP(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Proxy-Authorization") != "" {
			t.Error("a hop-by-hop header was forwarded")
		}
		fmt.Fprintf(w, "path %s", r.URL.Path)
	}))
	defer srv.Close()
	h := newHarness(t, strings.TrimPrefix(srv.URL, "http://"))
	pu, _ := http.NewRequest("GET", "http://"+h.addr, nil)
	client := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(pu.URL)}}
	resp, err := client.Get(srv.URL + "/x")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "path /x" {
		t.Fatalf("%s %q", resp.Status, b)
	}
	resp, err = client.Get("http://127.0.0.1:1/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("off the list: %s", resp.Status)
	}
}

func TestNamesNeverLeadToLoopback(t *testing.T) {
	addr := echo(t)
	_, port, _ := net.SplitHostPort(addr)
	h := newHarness(t, "localhost:"+port)
	status, c := h.connect(t, "localhost:"+port)
	if c != nil {
		c.Close()
		t.Fatal("a name rule reached loopback")
	}
	if !strings.HasPrefix(status, "502") || !strings.Contains(status, "no address a name may lead to") {
		t.Fatalf("status %s", status)
	}
}

func TestBadRequests(t *testing.T) {
	h := newHarness(t, "127.0.0.1:1")
	for _, req := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",                       // origin form
		"GET https://example.com/ HTTP/1.1\r\nHost: x\r\n\r\n",    // TLS through a plain request
		"CONNECT exa\x01mple.com:443 HTTP/1.1\r\nHost: x\r\n\r\n", // bad name
		"CONNECT example.com:99999 HTTP/1.1\r\n\r\n",
		"CONNECT example.com HTTP/1.1\r\n\r\n",
		"CONNECT x:1 HTTP/1.1\r\nX: " + strings.Repeat("a", maxHeader) + "\r\n\r\n",
		"\x16\x03\x01 not http at all\r\n\r\n",
	} {
		c, err := net.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, req)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		line, _ := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if !strings.HasPrefix(line, "HTTP/1.1 400") && !strings.HasPrefix(line, "HTTP/1.1 403") {
			t.Errorf("%.40q: %q", req, line)
		}
	}
}

func TestConnectionBound(t *testing.T) {
	rs, _ := ParseRules([]string{echo(t)})
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	p := &Proxy{Rules: rs, MaxConns: 1}
	go p.Serve(ln)
	defer p.Close()
	hold, err := net.Dial("tcp", ln.Addr().String()) // takes the one slot (its header never comes)
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Close()
	time.Sleep(50 * time.Millisecond)
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, _ := bufio.NewReader(c).ReadString('\n')
	if !strings.HasPrefix(line, "HTTP/1.1 503") {
		t.Fatalf("beyond the bound: %q", line)
	}
}

// sink is a destination that reads whatever it is sent and never answers.
func sink(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err == nil {
			defer c.Close()
			io.Copy(io.Discard, c)
		}
	}()
	return ln
}

func TestCloseEndsTunnels(t *testing.T) {
	ln := sink(t) // a destination that holds the tunnel open
	h := newHarness(t, ln.Addr().String())
	_, c := h.connect(t, ln.Addr().String())
	if c == nil {
		t.Fatal("refused")
	}
	defer c.Close()
	h.p.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || strings.Contains(err.Error(), "timeout") {
		t.Fatalf("the tunnel outlived the proxy: %v", err)
	}
}

// FuzzProxy: whatever a (compromised) server sends, the proxy answers or
// closes, and never reaches a destination off the list.
func FuzzProxy(f *testing.F) {
	for _, s := range []string{"CONNECT 127.0.0.1:1 HTTP/1.1\r\n\r\n", "GET http://127.0.0.1:1/ HTTP/1.1\r\nHost: a\r\n\r\n",
		"CONNECT [::1]:1 HTTP/1.1\r\n\r\n", "CONNECT a.example:1 HTTP/1.0\r\n\r\n", "\x00\xff"} {
		f.Add([]byte(s))
	}
	rs, _ := ParseRules([]string{"192.0.2.1:9"})
	f.Fuzz(func(t *testing.T, b []byte) {
		var reached []Event
		p := &Proxy{Rules: rs, DialTimeout: 50 * time.Millisecond, Record: func(e Event) { reached = append(reached, e) }}
		client, server := net.Pipe()
		done := make(chan struct{})
		go func() { p.handle(server); server.Close(); close(done) }()
		client.SetDeadline(time.Now().Add(time.Second))
		go func() { client.Write(b); client.Write([]byte("\r\n\r\n")) }()
		io.Copy(io.Discard, client)
		client.Close()
		<-done
		for _, e := range reached {
			if (e.Outcome == Allowed || e.Outcome == Closed) && e.Host != "192.0.2.1" {
				t.Fatalf("reached %s", e.Host)
			}
		}
	})
}

func TestNamesLeadToGlobalAddressesOnly(t *testing.T) {
	own := []netip.Addr{netip.MustParseAddr("203.0.114.7")}
	for _, s := range []string{"10.1.2.3", "172.17.0.1", "192.168.1.1", "100.100.100.200", "192.0.0.192", "169.254.169.254", "127.0.0.1",
		"0.0.0.0", "fd00:ec2::254", "fe80::1", "::1", "64:ff9b::a9fe:a9fe", "::7f00:1", "2002:7f00:1::", "2001::1", "::ffff:10.0.0.1", "203.0.114.7"} {
		if global(netip.MustParseAddr(s), own) {
			t.Errorf("%s counted global", s)
		}
	}
	for _, s := range []string{"8.8.8.8", "140.82.112.3", "2606:4700::1111"} {
		if !global(netip.MustParseAddr(s), own) {
			t.Errorf("%s not counted global", s)
		}
	}
	rules, _ := ParseRules([]string{"db.corp.example:5432", "10.20.0.0/16:5432"})
	if !allowedAddr(rules, netip.MustParseAddr("10.20.1.1"), 5432, nil) {
		t.Error("a private address a network rule lists is refused")
	}
	if allowedAddr(rules, netip.MustParseAddr("10.21.1.1"), 5432, nil) || allowedAddr(rules, netip.MustParseAddr("10.20.1.1"), 443, nil) {
		t.Error("a private address outside the listed network (or port) allowed")
	}
}

// fakeDNS answers every A query with addr.
func fakeDNS(t *testing.T, addr [4]byte) *net.Resolver {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 512)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			var m dnsmessage.Message
			if m.Unpack(buf[:n]) != nil || len(m.Questions) != 1 {
				continue
			}
			q := m.Questions[0]
			m.Header.Response, m.Header.Authoritative = true, true
			if q.Type == dnsmessage.TypeA {
				m.Answers = []dnsmessage.Resource{{Header: dnsmessage.ResourceHeader{Name: q.Name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET, TTL: 60}, Body: &dnsmessage.AResource{A: addr}}}
			}
			out, _ := m.Pack()
			pc.WriteTo(out, from)
		}
	}()
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "udp", pc.LocalAddr().String())
	}}
}

// A listed name whose DNS the attacker controls cannot lead to a private
// address (the gateway host's listeners, an internal service, metadata),
// unless a network rule lists it.
func TestRebindingToPrivateAddresses(t *testing.T) {
	addr := echo(t)
	_, port, _ := net.SplitHostPort(addr)
	h := newHarness(t, "*.attacker.example:"+port)
	h.p.Resolver = fakeDNS(t, [4]byte{127, 0, 0, 1})
	status, c := h.connect(t, "x.attacker.example:"+port)
	if c != nil {
		c.Close()
		t.Fatal("a listed name reached a loopback address its DNS gave")
	}
	if !strings.HasPrefix(status, "502") || !strings.Contains(status, "no address a name may lead to") {
		t.Fatalf("status %s", status)
	}
	h2 := newHarness(t, "*.attacker.example:"+port, "127.0.0.0/8:"+port)
	h2.p.Resolver = h.p.Resolver
	if status, c := h2.connect(t, "x.attacker.example:"+port); c == nil {
		t.Fatalf("a name listed with its network refused: %s", status)
	} else {
		c.Close()
	}
}

// A server cannot flood the audit log through its way out: events beyond
// the launch's budget are counted in one summary, and malformed requests
// end its way out.
func TestEventBudget(t *testing.T) {
	h := newHarness(t, "127.0.0.1:1")
	h.p.Launch = "launch-1"
	for i := 0; i < maxBad; i++ {
		c, err := net.Dial("tcp", h.addr)
		if err != nil {
			break // cut
		}
		io.WriteString(c, "NOT A REQUEST\r\n\r\n")
		bufio.NewReader(c).ReadString('\n')
		c.Close()
	}
	time.Sleep(100 * time.Millisecond)
	h.p.Close()
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.events) > int(eventBurst)+10 {
		t.Fatalf("%d events recorded for %d bad requests", len(h.events), maxBad)
	}
	var suppressed, cut bool
	for _, e := range h.events {
		if e.Launch != "launch-1" {
			t.Fatalf("event without its launch: %+v", e)
		}
		if strings.Contains(e.Reason, "NOT A REQUEST") || len(e.Host) > maxField {
			t.Fatalf("an event keeps what the server sent: %+v", e)
		}
		suppressed = suppressed || e.Outcome == Suppressed && strings.Contains(e.Reason, "failed")
		cut = cut || e.Outcome == Cut
	}
	if !suppressed || !cut {
		t.Fatalf("no summary (%v) or no cut (%v): %+v", suppressed, cut, h.events[len(h.events)-3:])
	}
	if c, err := net.Dial("tcp", h.addr); err == nil {
		c.Close()
		t.Error("the way out still accepts after the cut")
	}
}

func TestIdleTunnelsEnd(t *testing.T) {
	ln := sink(t)
	h := newHarness(t, ln.Addr().String())
	h.p.Idle = 100 * time.Millisecond
	_, c := h.connect(t, ln.Addr().String())
	if c == nil {
		t.Fatal("refused")
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || strings.Contains(err.Error(), "timeout") {
		t.Fatalf("an idle tunnel stayed open: %v", err)
	}
}
