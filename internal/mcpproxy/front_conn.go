package mcpproxy

import (
	"context"
	"crypto/tls"
	"net"
	"sync"
)

// An answer larger than net/http's 4 KB connection buffer leaves the
// server in two or more writes: the buffer's first 4 KB, then the rest
// (and, without a Content-Length, the chunked body's end) once the handler
// returns. Each write is a segment the agent's reader is woken for, and on
// loopback each costs the sending process the receiving side's TCP work
// too. The agent listener's connections can therefore hold their writes
// while one answer is written, and send them in one (answerWhole).

// HoldingListener wraps the agent listener (beneath TLS, if any) so that
// its connections can hold an answer's writes; the server must use
// ConnContext for the handler to find them.
func HoldingListener(ln net.Listener) net.Listener { return holdingListener{ln} }

type holdingListener struct{ net.Listener }

func (l holdingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &heldConn{Conn: c}, nil
}

type heldConnKey struct{}

// ConnContext is the agent server's http.Server.ConnContext: it makes a
// holding connection known to the requests served on it.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if hc, ok := c.(*heldConn); ok {
		return context.WithValue(ctx, heldConnKey{}, hc)
	}
	return ctx
}

func heldConnOf(ctx context.Context) *heldConn {
	hc, _ := ctx.Value(heldConnKey{}).(*heldConn)
	return hc
}

// maxHeld bounds what a connection holds: a larger answer is written as
// net/http writes it.
const maxHeld = 256 << 10

// heldBuffers recycle the buffers held writes gather in.
var heldBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 8<<10); return &b }}

// heldConn is an agent connection whose writes can be held and then sent
// in one. Only an HTTP/1 exchange holds it (one request at a time is
// served on the connection, on one goroutine). Every write goes under the
// lock, the held ones' too: a write from elsewhere (net/http's own, such as
// a 100 Continue, or crypto/tls answering a key update from the reading
// goroutine) waits for a release in progress, and so stays in order.
type heldConn struct {
	net.Conn

	mu   sync.Mutex
	held *[]byte // non-nil while writes are held
	err  error   // a release's write failed: the connection is closed
}

func (c *heldConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.err != nil:
		return 0, c.err
	case c.held != nil:
		*c.held = append(*c.held, p...)
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// hold starts holding writes.
func (c *heldConn) hold() {
	c.mu.Lock()
	if c.held == nil {
		b := heldBuffers.Get().(*[]byte)
		*b = (*b)[:0]
		c.held = b
	}
	c.mu.Unlock()
}

// release sends what was held, in one write, and stops holding. The
// connection's write deadline applies to that write. net/http was told
// the held writes succeeded: when this one fails (a deadline passed, the
// agent went away), part of the answer may have left and nothing may
// follow it, so the connection is closed (the agent reads its end rather
// than wait for the rest) and every later write fails.
func (c *heldConn) release() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.held
	if b == nil {
		return nil
	}
	c.held = nil
	defer func() {
		if cap(*b) <= maxHeld+(16<<10) {
			heldBuffers.Put(b)
		}
	}()
	if len(*b) == 0 {
		return nil
	}
	if _, err := c.Conn.Write(*b); err != nil {
		c.err = err
		c.Conn.Close()
		return err
	}
	return nil
}

// CloseWrite half-closes the connection, as net/http does before closing
// one it answered with Connection: close.
func (c *heldConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
