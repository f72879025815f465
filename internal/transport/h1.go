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
	"sync/atomic"
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
// protocol upgrade, a body over 64 KiB) go to net/http's Transport it was
// made from.
//
// Connection reuse follows net/http's rules: a connection goes back to
// the pool only after its response's body was read to its end (framed by
// Content-Length or chunked encoding, nothing after it) and neither side
// said "Connection: close"; a response read until the connection's end, a
// body closed early, a cancelled request or an error closes it. A pooled
// connection is checked before use (the server may have closed it while
// idle: a keep-alive timeout). A request none of whose bytes could be
// written on a reused connection is sent once more, on another
// connection: the server cannot have received it. A request any of whose
// bytes were written is not sent again (the server may have acted on it),
// as net/http does not for a POST, unless its method is idempotent (GET:
// the standalone event stream) and not a byte of an answer came.
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
	cw        *countingWriter // what the request's write reached the connection with
	lr        *limitedConn    // bounds the response head
	br        *bufio.Reader
	bw        *bufio.Writer
	addr      string
	idleSince time.Time
}

// countingWriter writes to a connection and counts the bytes it took.
type countingWriter struct {
	nc net.Conn
	n  int64
}

func (w *countingWriter) Write(p []byte) (int, error) {
	n, err := w.nc.Write(p)
	w.n += int64(n)
	return n, err
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
	dial := base.DialContext
	if dial == nil {
		dial = (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext
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

// maxDirectBody is the largest request body the direct transport sends.
// A server may answer before it has read the body (a 401, a 413) and
// close: net/http's Transport reads that answer while it is still
// writing; this transport writes first, which is safe only for a body the
// kernels' socket buffers take whole. Larger bodies (and bodies of unknown
// length) go to the fallback.
const maxDirectBody = 64 << 10

// takes reports whether req is for this transport rather than the
// fallback.
func (t *directTransport) takes(req *http.Request) bool {
	if req.URL.Scheme != "http" || req.Method == http.MethodConnect || req.Header.Get("Upgrade") != "" {
		return false
	}
	if req.Body != nil && req.Body != http.NoBody && (req.ContentLength < 0 || req.ContentLength > maxDirectBody) {
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
	if err := checkRequest(req); err != nil {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, err
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
		if !reused || attempt > 0 || ctx.Err() != nil || !resendable(req, err) {
			return nil, err
		}
		// The reused connection was dead: send the request again on
		// another, if its body can be had again.
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

// checkRequest refuses what net/http's Transport refuses before writing:
// no host, a method or a header that would not be one on the wire.
func checkRequest(req *http.Request) error {
	if req.URL.Host == "" {
		return errors.New("upstream request: no host in the URL")
	}
	if req.Method != "" && !validMethod(req.Method) {
		return fmt.Errorf("upstream request: invalid method %q", req.Method)
	}
	for k, vs := range req.Header {
		if !httpguts.ValidHeaderFieldName(k) {
			return fmt.Errorf("upstream request: invalid header field name %q", k)
		}
		for _, v := range vs {
			if !httpguts.ValidHeaderFieldValue(v) {
				return fmt.Errorf("upstream request: invalid header field value for %q", k)
			}
		}
	}
	return nil
}

// validMethod reports whether m is an HTTP token (RFC 9110, 9.1).
func validMethod(m string) bool {
	for i := 0; i < len(m); i++ {
		if !httpguts.IsTokenRune(rune(m[i])) {
			return false
		}
	}
	return true
}

// resendable reports whether req, which failed with err on a reused
// connection, may be sent again, as net/http's Transport would: if none of
// it was written (the server cannot have received it), or if its method is
// idempotent (GET, HEAD, OPTIONS, TRACE) and not a byte of an answer came
// (the server closed the connection as it was used: a keep-alive timeout).
func resendable(req *http.Request, err error) bool {
	var unsent *unsentError
	if errors.As(err, &unsent) {
		return true
	}
	var none *noAnswerError
	if !errors.As(err, &none) {
		return false
	}
	switch req.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}

// noAnswerError is a connection that ended (or failed) before any byte of
// an answer arrived.
type noAnswerError struct{ err error }

func (e *noAnswerError) Error() string { return e.err.Error() }
func (e *noAnswerError) Unwrap() error { return e.err }

// unsentError is a failure to write a request before any of its bytes
// reached the connection: the server cannot have received it.
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
	c.cw.n = 0
	err := req.Write(c.bw)
	if err == nil {
		err = c.bw.Flush()
	}
	if err != nil {
		if c.cw.n == 0 {
			err = &unsentError{err}
		}
		return fail(err)
	}
	if trace != nil && trace.WroteRequest != nil {
		trace.WroteRequest(httptrace.WroteRequestInfo{})
	}
	c.lr.left = t.maxHeader
	var resp *http.Response
	for informational := 0; resp == nil; informational++ {
		r, err := http.ReadResponse(c.br, req)
		switch {
		case err != nil:
			if informational == 0 && c.lr.left == t.maxHeader {
				err = &noAnswerError{err} // not a byte of an answer came
			}
			return fail(err)
		case r.StatusCode >= 200:
			resp = r
		// 1xx answers (100 Continue, 103 Early Hints) precede the response;
		// 101 would switch protocols, which no request here asks for.
		case r.StatusCode == http.StatusSwitchingProtocols:
			return fail(errors.New("upstream switched protocols unasked"))
		case informational >= 5:
			return fail(errors.New("upstream sent too many informational responses"))
		}
	}
	c.lr.left = math.MaxInt64
	b := &h1body{t: t, c: c, stop: stop, trace: trace,
		keepAlive: !resp.Close && !req.Close && !httpguts.HeaderValuesContainsToken(req.Header["Connection"], "close") &&
			(resp.ContentLength >= 0 || len(resp.TransferEncoding) > 0)}
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
	closed    atomic.Bool
}

func (b *h1body) Read(p []byte) (int, error) {
	if b.closed.Load() {
		return 0, http.ErrBodyReadAfterClose
	}
	n, err := b.rc.Read(p)
	if err != nil {
		b.finish(err == io.EOF)
	}
	return n, err
}

func (b *h1body) Close() error {
	b.closed.Store(true)
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
	cw := &countingWriter{nc: nc}
	return &h1conn{nc: nc, cw: cw, lr: lr, br: bufio.NewReader(lr), bw: bufio.NewWriter(cw), addr: addr}, false, nil
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
