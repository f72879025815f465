package transport

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portcullis-dev/portcullis/internal/wire"
)

// Stream limits.
const (
	// maxQueued bounds the related messages waiting for one caller; beyond
	// it further notifications for that call are dropped (and counted)
	// rather than letting one slow reader hold the whole connection.
	maxQueued = 4096
	// maxBacklog bounds the unrelated messages kept before Listen is called.
	maxBacklog = 256
	// maxWriteWait bounds a write whose context has no deadline.
	maxWriteWait = time.Minute
)

// StreamConn speaks newline-delimited JSON-RPC over a reader and a writer:
// a child process's stdout and stdin, or an in-memory pipe.
type StreamConn struct {
	w    io.Writer
	wsem chan struct{} // held while a message is written
	// maxWait bounds a write whose context has no deadline (maxWriteWait).
	maxWait  time.Duration
	r        *bufio.Reader
	maxLine  int
	maxDepth int
	log      *slog.Logger
	release  func() error // stops what produces the stream (the process)

	mu      sync.Mutex
	pending map[string]*waiter // by raw request id
	byToken map[string]*waiter // by raw progress token
	listen  func(*wire.Message)
	backlog []*wire.Message
	closed  bool

	done      chan struct{}
	closeOnce sync.Once
	// Dropped counts messages that were invalid, unanswerable or over a bound.
	Dropped atomic.Int64
}

// waiter is one request awaiting its response; the reader queues related
// messages and then the response, the caller drains them.
type waiter struct {
	mu     sync.Mutex
	queue  []*wire.Message
	final  *wire.Message
	notify chan struct{}
}

func (w *waiter) push(m *wire.Message, final bool) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if final {
		w.final = m
	} else {
		if len(w.queue) >= maxQueued {
			return false
		}
		w.queue = append(w.queue, m)
	}
	select {
	case w.notify <- struct{}{}:
	default:
	}
	return true
}

func (w *waiter) take() ([]*wire.Message, *wire.Message) {
	w.mu.Lock()
	defer w.mu.Unlock()
	q, f := w.queue, w.final
	w.queue = nil
	return q, f
}

// NewStreamConn reads messages (lines of at most maxLine bytes) from r and
// writes to w. release is called once on Close or when r ends.
func NewStreamConn(r io.Reader, w io.Writer, maxLine, maxDepth int, release func() error, log *slog.Logger) *StreamConn {
	c := &StreamConn{
		w: w, wsem: make(chan struct{}, 1), maxWait: maxWriteWait, r: bufio.NewReaderSize(r, 64<<10), maxLine: maxLine, maxDepth: maxDepth, log: log, release: release,
		pending: map[string]*waiter{}, byToken: map[string]*waiter{}, done: make(chan struct{}),
	}
	go c.read()
	return c
}

var _ Conn = (*StreamConn)(nil)

// RoundTrip implements Conn.
func (c *StreamConn) RoundTrip(ctx context.Context, req *wire.Message, related func(*wire.Message)) (*wire.Message, error) {
	if req.Kind != wire.Request {
		return nil, fmt.Errorf("%w: round trip of a %s", ErrProtocol, req.Kind)
	}
	key := string(req.IDBytes())
	tok := ""
	if sp := req.Meta("progressToken"); !sp.Empty() {
		tok = string(req.Bytes(sp))
	}
	wt := &waiter{notify: make(chan struct{}, 1)}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	if _, dup := c.pending[key]; dup {
		c.mu.Unlock()
		return nil, fmt.Errorf("%w: request id in use", ErrProtocol)
	}
	c.pending[key] = wt
	if tok != "" {
		c.byToken[tok] = wt
	}
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, key)
		if tok != "" && c.byToken[tok] == wt {
			delete(c.byToken, tok)
		}
		c.mu.Unlock()
	}()
	if err := c.write(ctx, req.Raw); err != nil {
		return nil, err
	}
	for {
		select {
		case <-wt.notify:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-c.done:
			if q, f := wt.take(); f != nil || len(q) > 0 {
				for _, m := range q {
					related(m)
				}
				if f != nil {
					return f, nil
				}
			}
			return nil, ErrClosed
		}
		q, f := wt.take()
		for _, m := range q {
			related(m)
		}
		if f != nil {
			return f, nil
		}
	}
}

// Send implements Conn.
func (c *StreamConn) Send(ctx context.Context, msg []byte) error {
	select {
	case <-c.done:
		return ErrClosed
	default:
	}
	return c.write(ctx, msg)
}

// write sends one message as one line. Raw line breaks can only be
// insignificant whitespace in valid JSON (inside strings they are escaped),
// so they become spaces.
//
// It waits for its turn and for the server to read the line at most until
// ctx's deadline (maxWriteWait without one). A server that has not read a
// line by then (stopped, hung, or not reading its input) has its
// connection closed and its process stopped: a line written in part
// cannot be taken back, and a writer blocked for good would hold every
// later caller of the connection, and their call slots, with it. A
// cancellation alone does not cut a write short.
func (c *StreamConn) write(ctx context.Context, msg []byte) error {
	if bytes.ContainsAny(msg, "\r\n") {
		msg = bytes.Map(func(r rune) rune {
			if r == '\n' || r == '\r' {
				return ' '
			}
			return r
		}, msg)
	}
	deadline, ok := ctx.Deadline()
	if !ok || time.Until(deadline) > c.maxWait {
		deadline = time.Now().Add(c.maxWait)
	}
	wctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), deadline)
	defer cancel()
	buf := make([]byte, 0, len(msg)+1)
	buf = append(append(buf, msg...), '\n')
	select {
	case c.wsem <- struct{}{}:
	case <-c.done:
		return ErrClosed
	case <-wctx.Done():
		return fmt.Errorf("%w: waiting to write to the server: %v", ErrClosed, wctx.Err())
	}
	defer func() { <-c.wsem }()
	select {
	case <-c.done:
		return ErrClosed
	default:
	}
	if err := wctx.Err(); err != nil {
		// Out of time before a byte was written: the stream is intact.
		return fmt.Errorf("waiting to write to the server: %w", err)
	}
	if d, ok := c.w.(interface{ SetWriteDeadline(time.Time) error }); ok && d.SetWriteDeadline(deadline) == nil {
		// A pipe to a process: the write itself ends at the deadline.
		_, err := c.w.Write(buf)
		d.SetWriteDeadline(time.Time{})
		if err != nil {
			c.shutdown()
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return fmt.Errorf("%w: the server did not read its input in time; its connection is closed", ErrClosed)
			}
			return fmt.Errorf("%w: write: %v", ErrClosed, err)
		}
		return nil
	}
	// Another writer (an in-process pipe): closing the connection at the
	// deadline ends a write still blocked then.
	late := context.AfterFunc(wctx, c.shutdown)
	_, err := c.w.Write(buf)
	stopped := late()
	if err != nil {
		c.shutdown()
		return fmt.Errorf("%w: write: %v", ErrClosed, err)
	}
	if !stopped {
		return fmt.Errorf("%w: the server did not read its input in time; its connection is closed", ErrClosed)
	}
	return nil
}

// Listen implements Conn.
func (c *StreamConn) Listen(fn func(*wire.Message)) {
	c.mu.Lock()
	backlog := c.backlog
	c.backlog = nil
	c.listen = fn
	c.mu.Unlock()
	for _, m := range backlog {
		fn(m)
	}
}

// Negotiated implements Conn (nothing to do over stdio).
func (c *StreamConn) Negotiated(string) {}

// Done implements Conn.
func (c *StreamConn) Done() <-chan struct{} { return c.done }

// Close implements Conn.
func (c *StreamConn) Close() error {
	var err error
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
		if c.release != nil {
			err = c.release()
		}
		close(c.done)
	})
	return err
}

func (c *StreamConn) shutdown() { go c.Close() }

func (c *StreamConn) read() {
	defer c.Close()
	for {
		line, err := c.line()
		if len(bytes.TrimSpace(line)) > 0 {
			c.dispatch(line)
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && c.log != nil {
				c.log.Debug("upstream stream ended", "err", err)
			}
			return
		}
	}
}

// line reads one line, skipping (and counting) lines over the limit
// without buffering them whole.
func (c *StreamConn) line() ([]byte, error) {
	var line []byte
	for {
		chunk, err := c.r.ReadSlice('\n')
		if len(line)+len(chunk) > c.maxLine {
			c.Dropped.Add(1)
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = c.r.ReadSlice('\n')
			}
			return nil, err
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			line = append(line, chunk...)
			continue
		}
		// Copy: ReadSlice's buffer is reused, and the message outlives it.
		line = append(line, chunk...)
		return bytes.TrimRight(line, "\r\n"), err
	}
}

func (c *StreamConn) dispatch(line []byte) {
	m, err := wire.Parse(line, c.maxDepth)
	if err != nil {
		c.Dropped.Add(1)
		if c.log != nil {
			c.log.Warn("upstream sent an invalid message; dropped", "err", err)
		}
		// If it was the answer to a request in flight, that request fails
		// now instead of waiting out its timeout.
		if id := unreadableAnswerID(line); id != nil {
			c.mu.Lock()
			wt := c.pending[string(id)]
			c.mu.Unlock()
			if ans := malformedAnswer(id, err); wt != nil && ans != nil {
				wt.push(ans, true)
			}
		}
		return
	}
	c.mu.Lock()
	switch m.Kind {
	case wire.Response, wire.ErrorReply:
		wt := c.pending[string(m.IDBytes())]
		c.mu.Unlock()
		if wt == nil {
			c.Dropped.Add(1) // late (the caller gave up) or unsolicited
			return
		}
		wt.push(m, true)
		return
	case wire.Notification:
		if m.Method == "notifications/progress" {
			if sp := m.Param("progressToken"); !sp.Empty() {
				if wt := c.byToken[string(m.Bytes(sp))]; wt != nil {
					c.mu.Unlock()
					if !wt.push(m, false) {
						c.Dropped.Add(1)
					}
					return
				}
			}
		}
	}
	fn := c.listen
	if fn == nil {
		if len(c.backlog) < maxBacklog {
			c.backlog = append(c.backlog, m)
		} else {
			c.Dropped.Add(1)
		}
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	fn(m)
}

// unreadableAnswerID is the id of a message the strict parse refused, read
// leniently, if it looks like an answer: only to fail the request it
// answers (what it says is never used).
func unreadableAnswerID(b []byte) []byte {
	var v struct {
		ID     json.RawMessage `json:"id"`
		Method json.RawMessage `json:"method"`
	}
	if json.Unmarshal(b, &v) != nil || len(v.ID) == 0 || v.Method != nil {
		return nil
	}
	return v.ID
}

// malformedAnswer is the error answer to id standing in for an answer the
// upstream sent that could not be read.
func malformedAnswer(id []byte, err error) *wire.Message {
	m, perr := wire.Parse(wire.NewError(id, wire.CodeInternalError, "portcullis: the upstream's answer could not be read ("+err.Error()+")", nil), 0)
	if perr != nil {
		return nil
	}
	return m
}
