package transport

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/http/httpguts"
)

// directTransport is the HTTP transport of a plain-HTTP upstream. Each
// request is written, and its response read, on the caller's goroutine
// over a kept-alive HTTP/1.1 connection, where net/http's Transport hands
// every request to a writing goroutine and every response back from a
// reading one: two goroutine wake-ups a relayed call, a large part of
// what the hot path spends in the scheduler (docs/performance.md).
// Requests it does not take (https, a proxy from the environment, a
// protocol upgrade) go to net/http's Transport it was made from.
//
// Connection reuse follows net/http's rules: a connection goes back to
// the pool only after its response's body was read to its end (framed by
// Content-Length or chunked encoding, nothing after it) and neither side
// said "Connection: close"; a response read until the connection's end, a
// body closed early, a cancelled request or an error closes it. A pooled
// connection is checked before use (the server may have closed it while
// idle: a keep-alive timeout), and a request that could not be written on
// a reused connection is sent once more on a new one: the server cannot
// have acted on a request it did not receive whole. A request written
// whose answer never came is not sent again (it may have been acted on),
// as net/http does not for a POST.
type directTransport struct {
	fallback    *http.Transport
	dial        func(ctx context.Context, network, addr string) (net.Conn, error)
	maxIdle     int           // idle connections kept per host
	idleTimeout time.Duration // an idle connection is closed after this
	maxHeader   int64         // bound on a response's head (status line and headers)

	mu     sync.Mutex
	idle   map[string][]*h1conn // host:port → idle connections, most recent last
	pruner *time.Timer          // closes expired idle connections; nil when none are idle
}

// h1conn is one HTTP/1.1 connection: in use by one request at a time.
type h1conn struct {
	nc        net.Conn
	lr        *limitedConn // bounds the response head
	br        *bufio.Reader
	bw        *bufio.Writer
	addr      string
	idleSince time.Time
}

// limitedConn reads from a connection and fails past limit bytes (reset
// for each response's head; unlimited for bodies, which their readers
// bound).
type limitedConn struct {
	net.Conn
	left int64
}

var errHeadTooLarge = errors.New("upstream response head too large")

func (l *limitedConn) Read(p []byte) (int, error) {
	if l.left <= 0 {
		return 0, errHeadTooLarge
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.Conn.Read(p)
	l.left -= int64(n)
	return n, err
}

// newDirectTransport makes the direct transport over base (which serves
// what it does not take). It keeps up to maxIdle idle connections per
// host, for idleTimeout each.
func newDirectTransport(base *http.Transport, maxIdle int, idleTimeout time.Duration) *directTransport {
	d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	dial := base.DialContext
	if dial == nil {
		dial = d.DialContext
	}
	maxHeader := base.MaxResponseHeaderBytes
	if maxHeader <= 0 {
		maxHeader = 1 << 20
	}
	return &directTransport{
		fallback:    base,
		dial:        dial,
		maxIdle:     maxIdle,
		idleTimeout: idleTimeout,
		maxHeader:   maxHeader,
		idle:        make(map[string][]*h1conn),
	}
}

// takes reports whether req is for this transport rather than the
// fallback.
func (t *directTransport) takes(req *http.Request) bool {
	if req.URL.Scheme != "http" || req.Method == http.MethodConnect || req.Header.Get("Upgrade") != "" {
		return false
	}
	if t.fallback.Proxy != nil {
		if u, err := t.fallback.Proxy(req); err != nil || u != nil {
			return false
		}
	}
	return true
}

// RoundTrip implements http.RoundTripper.
func (t *directTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !t.takes(req) {
		return t.fallback.RoundTrip(req)
	}
	// As net/http's Transport: a header that would not be one on the wire
	// is refused, not written.
	for k, vs := range req.Header {
		if !httpguts.ValidHeaderFieldName(k) {
			return nil, fmt.Errorf("upstream request: invalid header field name %q", k)
		}
		for _, v := range vs {
			if !httpguts.ValidHeaderFieldValue(v) {
				return nil, fmt.Errorf("upstream request: invalid header field value for %q", k)
			}
		}
	}
	ctx := req.Context()
	port := req.URL.Port()
	if port == "" {
		port = "80"
	}
	addr := net.JoinHostPort(req.URL.Hostname(), port)
	trace := httptrace.ContextClientTrace(ctx)
	for attempt := 0; ; attempt++ {
		if trace != nil && trace.GetConn != nil {
			trace.GetConn(addr)
		}
		c, reused, err := t.conn(ctx, addr)
		if err != nil {
			return nil, err
		}
		if trace != nil && trace.GotConn != nil {
			info := httptrace.GotConnInfo{Conn: c.nc, Reused: reused, WasIdle: reused}
			if reused {
				info.IdleTime = time.Since(c.idleSince)
			}
			trace.GotConn(info)
		}
		resp, err := t.exchange(ctx, c, req, trace)
		if err == nil {
			return resp, nil
		}
		var unsent *unsentError
		if !errors.As(err, &unsent) || !reused || attempt > 0 || ctx.Err() != nil {
			return nil, err
		}
		// The reused connection was dead: send the request again on a new
		// one, if its body can be had again.
		if req.Body != nil && req.Body != http.NoBody {
			if req.GetBody == nil {
				return nil, err
			}
			body, gerr := req.GetBody()
			if gerr != nil {
				return nil, err
			}
			req = req.Clone(ctx)
			req.Body = body
		}
	}
}

// unsentError is a failure to write a request: the server did not
// receive it whole.
type unsentError struct{ err error }

func (e *unsentError) Error() string { return e.err.Error() }
func (e *unsentError) Unwrap() error { return e.err }

// aLongTimeAgo is a deadline that interrupts any blocked read or write.
var aLongTimeAgo = time.Unix(1, 0)

// exchange writes req on c and reads the head of its response. The
// response's body owns c from then on (it returns c to the pool, or
// closes it); on an error c is closed.
func (t *directTransport) exchange(ctx context.Context, c *h1conn, req *http.Request, trace *httptrace.ClientTrace) (*http.Response, error) {
	// A cancelled request interrupts the connection's reads and writes
	// (the connection is then not reused).
	stop := context.AfterFunc(ctx, func() { c.nc.SetDeadline(aLongTimeAgo) })
	fail := func(err error) (*http.Response, error) {
		stop()
		c.nc.Close()
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, ctxErr
		}
		return nil, err
	}
	if err := req.Write(c.bw); err != nil {
		return fail(&unsentError{err})
	}
	if err := c.bw.Flush(); err != nil {
		return fail(&unsentError{err})
	}
	if trace != nil && trace.WroteRequest != nil {
		trace.WroteRequest(httptrace.WroteRequestInfo{})
	}
	c.lr.left = t.maxHeader
	var resp *http.Response
	for informational := 0; ; informational++ {
		r, err := http.ReadResponse(c.br, req)
		if err != nil {
			return fail(err)
		}
		// 1xx answers (100 Continue, 103 Early Hints) precede the response;
		// 101 would switch protocols, which no request here asks for.
		if r.StatusCode >= 200 || informational >= 5 {
			resp = r
			break
		}
		if r.StatusCode == http.StatusSwitchingProtocols {
			return fail(fmt.Errorf("upstream switched protocols unasked"))
		}
	}
	if resp.StatusCode < 200 {
		return fail(fmt.Errorf("upstream sent too many informational responses"))
	}
	c.lr.left = math.MaxInt64
	b := &h1body{t: t, c: c, stop: stop, trace: trace,
		keepAlive: !resp.Close && !req.Close && (resp.ContentLength >= 0 || len(resp.TransferEncoding) > 0)}
	if resp.Body == http.NoBody || resp.Body == nil {
		b.finish(true)
		resp.Body = http.NoBody
		return resp, nil
	}
	b.rc = resp.Body
	resp.Body = b
	return resp, nil
}

// h1body is a response's body; at its end the connection returns to the
// pool. Close may be called while a Read is blocked (to cancel it).
type h1body struct {
	rc        io.ReadCloser
	t         *directTransport
	c         *h1conn
	stop      func() bool
	trace     *httptrace.ClientTrace
	keepAlive bool
	once      sync.Once
}

func (b *h1body) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err != nil {
		b.finish(err == io.EOF)
	}
	return n, err
}

func (b *h1body) Close() error {
	b.finish(false)
	return nil
}

// finish releases the connection once: to the pool if the body was read
// to its end and the connection may be kept, else closed.
func (b *h1body) finish(atEnd bool) {
	b.once.Do(func() {
		// stop is false if the request's context already ended (the
		// connection's deadline is then set, or about to be).
		var err error
		if b.stop() && atEnd && b.keepAlive && b.c.br.Buffered() == 0 {
			err = b.t.put(b.c)
		} else {
			err = errNotReusable
			b.c.nc.Close()
		}
		if b.trace != nil && b.trace.PutIdleConn != nil {
			b.trace.PutIdleConn(err)
		}
	})
}

// conn returns an idle connection to addr that is still open, or a new
// one; reused says which.
func (t *directTransport) conn(ctx context.Context, addr string) (c *h1conn, reused bool, err error) {
	now := time.Now()
	for {
		t.mu.Lock()
		pool := t.idle[addr]
		if len(pool) == 0 {
			t.mu.Unlock()
			break
		}
		c = pool[len(pool)-1]
		pool[len(pool)-1] = nil
		t.idle[addr] = pool[:len(pool)-1]
		t.mu.Unlock()
		if now.Sub(c.idleSince) < t.idleTimeout && open(c.nc) {
			return c, true, nil
		}
		c.nc.Close()
	}
	nc, err := t.dial(ctx, "tcp", addr)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, false, ctxErr
		}
		return nil, false, err
	}
	lr := &limitedConn{Conn: nc}
	return &h1conn{nc: nc, lr: lr, br: bufio.NewReader(lr), bw: bufio.NewWriter(nc), addr: addr}, false, nil
}

// open reports whether an idle connection is still usable: the server
// has neither closed it nor sent anything on it (a response nobody asked
// for, or the end of the stream).
func open(nc net.Conn) bool {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	alive := false
	var b [1]byte
	err = rc.Read(func(fd uintptr) bool {
		n, _, rerr := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		alive = n < 0 && (rerr == syscall.EAGAIN || rerr == syscall.EWOULDBLOCK)
		return true // never wait
	})
	return err == nil && alive
}

// Why a connection was not kept (httptrace's PutIdleConn).
var (
	errNotReusable = errors.New("connection not reusable")
	errPoolFull    = errors.New("too many idle connections")
)

// put keeps c for the next request to its host, or closes it when the
// pool is full.
func (t *directTransport) put(c *h1conn) error {
	c.idleSince = time.Now()
	t.mu.Lock()
	pool := t.idle[c.addr]
	if len(pool) >= t.maxIdle {
		t.mu.Unlock()
		c.nc.Close()
		return errPoolFull
	}
	t.idle[c.addr] = append(pool, c)
	if t.pruner == nil {
		t.pruner = time.AfterFunc(t.idleTimeout, t.prune)
	}
	t.mu.Unlock()
	return nil
}

// prune closes the connections idle for idleTimeout, and runs again while
// any are idle.
func (t *directTransport) prune() {
	now := time.Now()
	var expired []*h1conn
	t.mu.Lock()
	next := time.Duration(0)
	for addr, pool := range t.idle {
		kept := pool[:0]
		for _, c := range pool {
			if age := now.Sub(c.idleSince); age >= t.idleTimeout {
				expired = append(expired, c)
			} else {
				kept = append(kept, c)
				if left := t.idleTimeout - age; next == 0 || left < next {
					next = left
				}
			}
		}
		clear(pool[len(kept):])
		if len(kept) == 0 {
			delete(t.idle, addr)
		} else {
			t.idle[addr] = kept
		}
	}
	if next > 0 {
		t.pruner.Reset(next)
	} else {
		t.pruner = nil
	}
	t.mu.Unlock()
	for _, c := range expired {
		c.nc.Close()
	}
}

// CloseIdleConnections closes the idle connections of both transports
// (http.Client.CloseIdleConnections calls it).
func (t *directTransport) CloseIdleConnections() {
	t.mu.Lock()
	var all []*h1conn
	for addr, pool := range t.idle {
		all = append(all, pool...)
		delete(t.idle, addr)
	}
	t.mu.Unlock()
	for _, c := range all {
		c.nc.Close()
	}
	t.fallback.CloseIdleConnections()
}
