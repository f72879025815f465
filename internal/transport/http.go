package transport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/oauthex"

	"github.com/portcullis-dev/portcullis/internal/wire"
)

// HTTP transport bounds.
const (
	maxResumes      = 3               // GET reconnections to finish one dropped answer
	maxRetryWait    = 5 * time.Second // cap on a server's requested reconnection delay
	defaultRetry    = 100 * time.Millisecond
	deleteTimeout   = 2 * time.Second
	streamGrace     = 2 * time.Second      // wait for a server to end a stream that delivered its answer
	drainWait       = 2 * time.Millisecond // of which the answer waits this long (finishStream)
	listenMinDelay  = 250 * time.Millisecond
	listenMaxDelay  = 30 * time.Second
	maxErrorBodyLen = 64 << 10
)

// Header names of the streamable HTTP transport.
const (
	HeaderSession     = "Mcp-Session-Id"
	HeaderProtocol    = "Mcp-Protocol-Version"
	headerLastEventID = "Last-Event-ID"
)

// HTTPConn is an MCP session with a server over streamable HTTP.
type HTTPConn struct {
	url      string
	client   *http.Client
	header   http.Header // added to every request (credentials from configuration)
	auth     auth.OAuthHandler
	maxMsg   int
	maxDepth int
	log      *slog.Logger

	mu        sync.Mutex
	sessionID string
	version   string
	// The same as header values, shared by every request (never modified).
	sessionHdr, versionHdr []string

	ctx       context.Context // the connection's lifetime
	cancel    context.CancelFunc
	done      chan struct{}
	closeOnce sync.Once
	listening atomic.Bool
	// slowEnd: the server's last answer stream did not end within
	// drainWait of its answer (finishStream).
	slowEnd atomic.Bool
	// lateEnds counts answers whose stream had not ended when the answer
	// was read (finishStream's).
	lateEnds atomic.Int64
	streamed atomic.Bool // the last answer came as an event stream
	// Dropped counts invalid messages the server sent.
	Dropped atomic.Int64
}

// NewHTTPConn returns a connection to the server at url. Nothing is sent
// until the first request (initialize). header is added to every request.
func NewHTTPConn(url string, client *http.Client, header http.Header, maxMsg, maxDepth int, log *slog.Logger) *HTTPConn {
	ctx, cancel := context.WithCancel(context.Background())
	return &HTTPConn{url: url, client: client, header: header, maxMsg: maxMsg, maxDepth: maxDepth, log: log, ctx: ctx, cancel: cancel, done: make(chan struct{})}
}

var _ Conn = (*HTTPConn)(nil)

// SetOAuth makes the connection an OAuth client of the server (MCP
// authorization): every request carries h's access token, and a 401 or 403
// answer runs h's authorization once before the request is sent again. Set
// it before the first request.
func (c *HTTPConn) SetOAuth(h auth.OAuthHandler) { c.auth = h }

// Streamed reports whether the server sent its last answer as an event
// stream (rather than one JSON body), so that a relay can answer the same
// way.
func (c *HTTPConn) Streamed() bool { return c.streamed.Load() }

// SessionID is the session the server assigned at initialize ("" if none).
func (c *HTTPConn) SessionID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sessionID
}

func (c *HTTPConn) newRequest(ctx context.Context, method string, body []byte) (*http.Request, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.url, r)
	if err != nil {
		return nil, err
	}
	for k, vs := range c.header {
		req.Header[k] = vs
	}
	if h, ok := ctx.Value(headerKey{}).([2]string); ok {
		req.Header.Set(h[0], h[1])
	}
	// Header values are shared slices, not Set's fresh ones: a call's
	// request is built per relayed message (the keys are canonical).
	c.mu.Lock()
	if c.sessionID != "" {
		req.Header[HeaderSession] = c.sessionHdr
	}
	if c.version != "" {
		req.Header[HeaderProtocol] = c.versionHdr
	}
	c.mu.Unlock()
	switch method {
	case http.MethodPost:
		req.Header["Content-Type"] = jsonType
		req.Header["Accept"] = acceptPost
	case http.MethodGet:
		req.Header["Accept"] = acceptGet
	}
	return req, nil
}

// Shared request header values (never modified).
var (
	jsonType   = []string{"application/json"}
	acceptPost = []string{"application/json, text/event-stream"}
	acceptGet  = []string{"text/event-stream"}
)

func (c *HTTPConn) do(req *http.Request) (*http.Response, error) {
	select {
	case <-c.done:
		return nil, ErrClosed
	default:
	}
	if err := c.setToken(req); err != nil {
		return nil, err
	}
	resp, err := c.send(req)
	if err != nil {
		return nil, err
	}
	if c.auth != nil && challenged(resp) {
		if resp, err = c.reauthorize(req, resp); err != nil {
			return nil, err
		}
	}
	if resp.StatusCode == http.StatusNotFound && c.SessionID() != "" {
		// The server no longer knows the session (it restarted or expired
		// it): this connection is over; a new one must initialize.
		drain(resp)
		c.Close()
		return nil, fmt.Errorf("%w: session expired", ErrClosed)
	}
	c.mu.Lock()
	if id := resp.Header.Get(HeaderSession); id != "" && c.sessionID == "" {
		c.sessionID, c.sessionHdr = id, []string{id}
	}
	c.mu.Unlock()
	return resp, nil
}

// challenged reports whether resp asks for authorization: a 401, or a 403
// for want of scope (step-up). Another 403 is the answer.
func challenged(resp *http.Response) bool {
	switch resp.StatusCode {
	case http.StatusUnauthorized:
		return true
	case http.StatusForbidden:
		cs, err := oauthex.ParseWWWAuthenticate(resp.Header.Values("WWW-Authenticate"))
		if err != nil {
			return false
		}
		for _, c := range cs {
			if c.Scheme == "bearer" && c.Params["error"] == "insufficient_scope" {
				return true
			}
		}
	}
	return false
}

// setToken puts the OAuth handler's current access token on req. A token
// that cannot be had (an expired one the server will not refresh) is left
// out: the server's challenge then starts a new authorization.
func (c *HTTPConn) setToken(req *http.Request) error {
	if c.auth == nil {
		return nil
	}
	ts, err := c.auth.TokenSource(req.Context())
	if err != nil {
		return fmt.Errorf("%w: %w", ErrAuthorization, err)
	}
	if ts == nil {
		return nil
	}
	tok, err := ts.Token()
	if err != nil {
		c.log.Warn("upstream access token not renewed; authorizing again", "err", err)
		return nil
	}
	tok.SetAuthHeader(req)
	return nil
}

// reauthorize answers the server's 401 or 403 challenge to req with one
// authorization round and sends req again (once: a second refusal is the
// answer).
func (c *HTTPConn) reauthorize(req *http.Request, resp *http.Response) (*http.Response, error) {
	if err := c.auth.Authorize(req.Context(), req, resp); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrAuthorization, err)
	}
	again := req.Clone(req.Context())
	if req.GetBody != nil {
		body, err := req.GetBody()
		if err != nil {
			return nil, err
		}
		again.Body = body
	}
	again.Header.Del("Authorization")
	if err := c.setToken(again); err != nil {
		return nil, err
	}
	return c.send(again)
}

// send sends req; a failure is the context's when it ended.
func (c *HTTPConn) send(req *http.Request) (*http.Response, error) {
	resp, err := c.client.Do(req)
	if err != nil {
		if ctxErr := req.Context().Err(); ctxErr != nil {
			return nil, ctxErr
		}
		return nil, fmt.Errorf("upstream request: %w", err)
	}
	return resp, nil
}

// RoundTrip implements Conn.
func (c *HTTPConn) RoundTrip(ctx context.Context, req *wire.Message, related func(*wire.Message)) (*wire.Message, error) {
	if req.Kind != wire.Request {
		return nil, fmt.Errorf("%w: round trip of a %s", ErrProtocol, req.Kind)
	}
	hreq, err := c.newRequest(ctx, http.MethodPost, req.Raw)
	if err != nil {
		return nil, err
	}
	resp, err := c.do(hreq)
	if err != nil {
		return nil, err
	}
	ok := resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusCreated
	if ok && mediaType(resp) == "text/event-stream" {
		c.streamed.Store(true)
		return c.readStream(ctx, resp.Body, req, related) // it owns the body
	}
	defer resp.Body.Close()
	switch {
	case ok:
	case resp.StatusCode >= 400:
		// Some servers answer a request they refuse with an HTTP error
		// carrying a JSON-RPC error: relay it as the answer.
		if m := c.errorBody(resp, req); m != nil {
			return m, nil
		}
		return nil, fmt.Errorf("%w: HTTP %d", ErrProtocol, resp.StatusCode)
	default:
		return nil, fmt.Errorf("%w: HTTP %d to a request", ErrProtocol, resp.StatusCode)
	}
	switch mediaType(resp) {
	case "application/json":
		c.streamed.Store(false)
		b, err := io.ReadAll(io.LimitReader(resp.Body, int64(c.maxMsg)+1))
		if err != nil {
			return nil, fmt.Errorf("upstream response: %w", err)
		}
		if len(b) > c.maxMsg {
			return nil, fmt.Errorf("%w: response over %d bytes", ErrProtocol, c.maxMsg)
		}
		m, err := wire.Parse(b, c.maxDepth)
		if err != nil {
			c.Dropped.Add(1)
			return nil, fmt.Errorf("%w: %v", ErrProtocol, err)
		}
		if !answers(m, req) {
			return nil, fmt.Errorf("%w: the response answers another request", ErrProtocol)
		}
		return m, nil
	}
	return nil, fmt.Errorf("%w: content type %q", ErrProtocol, resp.Header.Get("Content-Type"))
}

func answers(m, req *wire.Message) bool {
	return (m.Kind == wire.Response || m.Kind == wire.ErrorReply) && bytes.Equal(m.IDBytes(), req.IDBytes())
}

// readStream reads the answer's event stream until the response, resuming
// with Last-Event-ID on a GET when the server closes the stream first (it
// may, to poll: SEP-1699). It owns body and every stream it resumes.
func (c *HTTPConn) readStream(ctx context.Context, body io.ReadCloser, req *wire.Message, related func(*wire.Message)) (*wire.Message, error) {
	lastID, retry := "", defaultRetry
	for resumes := 0; ; resumes++ {
		ended := &endWatch{r: body}
		er := wire.NewEventReader(ended, c.maxMsg)
		for {
			ev, err := er.Next()
			if err != nil {
				if ctxErr := ctx.Err(); ctxErr != nil {
					er.Release()
					body.Close()
					return nil, ctxErr
				}
				if errors.Is(err, wire.ErrEventTooLarge) {
					er.Release()
					body.Close()
					return nil, fmt.Errorf("%w: event over %d bytes", ErrProtocol, c.maxMsg)
				}
				break
			}
			if ev.HasID {
				lastID = ev.ID
			}
			if ev.Retry >= 0 {
				retry = min(time.Duration(ev.Retry)*time.Millisecond, maxRetryWait)
			}
			if len(ev.Data) == 0 {
				continue // a priming event
			}
			m, err := wire.Parse(ev.Data, c.maxDepth)
			if err != nil {
				c.Dropped.Add(1)
				if id := unreadableAnswerID(ev.Data); id != nil && bytes.Equal(id, req.IDBytes()) {
					// The answer, unreadable: fail now, not at the timeout.
					er.Release()
					body.Close()
					return nil, fmt.Errorf("%w: the answer could not be read: %v", ErrProtocol, err)
				}
				continue
			}
			if answers(m, req) {
				er.Release()
				if ended.eof {
					// The stream ended with its answer (most do: the end
					// arrives in the same read): its connection is
					// already back in the pool.
					body.Close()
					if c.slowEnd.Load() {
						c.slowEnd.Store(false)
					}
					return m, nil
				}
				c.finishStream(body)
				return m, nil
			}
			if m.Kind == wire.Response || m.Kind == wire.ErrorReply {
				c.Dropped.Add(1) // an answer to another request on this stream
				continue
			}
			related(m)
		}
		er.Release()
		body.Close()
		if lastID == "" || resumes >= maxResumes {
			return nil, ErrNoResponse
		}
		select {
		case <-time.After(retry):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		hreq, err := c.newRequest(ctx, http.MethodGet, nil)
		if err != nil {
			return nil, err
		}
		hreq.Header.Set(headerLastEventID, lastID)
		resp, err := c.do(hreq)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusOK || mediaType(resp) != "text/event-stream" {
			drain(resp)
			return nil, ErrNoResponse
		}
		body = resp.Body
	}
}

// endWatch notes whether a stream's body has reached its end.
type endWatch struct {
	r   io.Reader
	eof bool
}

func (w *endWatch) Read(p []byte) (int, error) {
	n, err := w.r.Read(p)
	if errors.Is(err, io.EOF) {
		w.eof = true
	}
	return n, err
}

// errorBody reads a JSON-RPC error from an HTTP error response, answering
// req (whatever id the server put in it).
func (c *HTTPConn) errorBody(resp *http.Response, req *wire.Message) *wire.Message {
	if mediaType(resp) != "application/json" {
		return nil
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxErrorBodyLen))
	if err != nil {
		return nil
	}
	m, err := wire.Parse(b, c.maxDepth)
	if err != nil || m.Kind != wire.ErrorReply {
		return nil
	}
	if answers(m, req) {
		return m
	}
	fixed, err := wire.Parse(wire.NewResponseError(req.IDBytes(), m.Bytes(m.Error)), c.maxDepth)
	if err != nil {
		return nil
	}
	return fixed
}

// Send implements Conn.
func (c *HTTPConn) Send(ctx context.Context, msg []byte) error {
	hreq, err := c.newRequest(ctx, http.MethodPost, msg)
	if err != nil {
		return err
	}
	resp, err := c.do(hreq)
	if err != nil {
		return err
	}
	drain(resp)
	if resp.StatusCode != http.StatusAccepted && resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: HTTP %d to a notification", ErrProtocol, resp.StatusCode)
	}
	return nil
}

// Listen implements Conn: it opens the standalone GET stream, and reopens
// it (resuming after the last event seen) when it drops, until the
// connection closes. A server without one (405) is left alone.
func (c *HTTPConn) Listen(fn func(*wire.Message)) {
	if !c.listening.CompareAndSwap(false, true) {
		return
	}
	go func() {
		delay := listenMinDelay
		lastID := ""
		for c.ctx.Err() == nil {
			ok, stop := c.listenOnce(fn, &lastID)
			if stop {
				return
			}
			if ok {
				delay = listenMinDelay
			}
			select {
			case <-time.After(delay):
			case <-c.ctx.Done():
				return
			}
			delay = min(2*delay, listenMaxDelay)
		}
	}()
}

// listenOnce reads the GET stream once. ok: the stream was opened; stop:
// never try again.
func (c *HTTPConn) listenOnce(fn func(*wire.Message), lastID *string) (ok, stop bool) {
	hreq, err := c.newRequest(c.ctx, http.MethodGet, nil)
	if err != nil {
		return false, true
	}
	if *lastID != "" {
		hreq.Header.Set(headerLastEventID, *lastID)
	}
	resp, err := c.do(hreq)
	if err != nil {
		return false, errors.Is(err, ErrClosed) || c.ctx.Err() != nil
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusMethodNotAllowed:
		return false, true
	case resp.StatusCode != http.StatusOK || mediaType(resp) != "text/event-stream":
		return false, false
	}
	er := wire.NewEventReader(resp.Body, c.maxMsg)
	defer er.Release()
	for {
		ev, err := er.Next()
		if err != nil {
			return true, false
		}
		if ev.HasID {
			*lastID = ev.ID
		}
		if len(ev.Data) == 0 {
			continue
		}
		m, err := wire.Parse(ev.Data, c.maxDepth)
		if err != nil {
			c.Dropped.Add(1)
			continue
		}
		fn(m)
	}
}

// Negotiated implements Conn.
func (c *HTTPConn) Negotiated(version string) {
	c.mu.Lock()
	c.version, c.versionHdr = version, []string{version}
	c.mu.Unlock()
}

// Done implements Conn.
func (c *HTTPConn) Done() <-chan struct{} { return c.done }

// Close implements Conn: it ends the server's session with DELETE.
func (c *HTTPConn) Close() error {
	c.closeOnce.Do(func() {
		c.cancel()
		if id := c.SessionID(); id != "" {
			ctx, cancel := context.WithTimeout(context.Background(), deleteTimeout)
			if req, err := c.newRequest(ctx, http.MethodDelete, nil); err == nil {
				if resp, err := c.client.Do(req); err == nil {
					drain(resp)
				}
			}
			cancel()
		}
		close(c.done)
	})
	return nil
}

func mediaType(resp *http.Response) string {
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	return mt
}

// finishStream lets the server end a stream that has delivered its answer
// (it should close it next): the rest is read, bounded, so that the
// connection goes back to the pool instead of being torn down. The answer
// waits up to drainWait for that, unless this server's last stream took
// longer to end (then the wait would only add latency); the read goes on
// in the background, and the body is closed after streamGrace if the
// server keeps it open.
func (c *HTTPConn) finishStream(body io.ReadCloser) {
	c.lateEnds.Add(1)
	done := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(done)
		t := time.AfterFunc(streamGrace, func() { body.Close() })
		_, err := io.Copy(io.Discard, io.LimitReader(body, 64<<10))
		t.Stop()
		body.Close()
		// Slow: the stream was cut (the call ended first) or ended late.
		c.slowEnd.Store(err != nil || time.Since(start) > drainWait)
	}()
	if c.slowEnd.Load() {
		return
	}
	// The server ends the stream with its answer, almost always: wait that
	// long, so that the connection is back in the pool for the next call
	// (else the next call dials a new one).
	wait := drainTimers.Get().(*time.Timer)
	wait.Reset(drainWait)
	select {
	case <-done:
	case <-wait.C:
	}
	wait.Stop() // no value left behind: timers' channels are unbuffered since Go 1.23
	drainTimers.Put(wait)
}

// drainTimers recycles finishStream's timers (one a relayed call).
var drainTimers = sync.Pool{New: func() any {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return t
}}

// drain discards what is left of a body (bounded) so the connection can be
// reused, and closes it.
func drain(resp *http.Response) {
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}

// NewHTTPTransport is the HTTP transport for one upstream: connections are
// kept for reuse, as many as the upstream may have calls in flight. A
// plain-HTTP upstream is served on the caller's goroutine
// (directTransport); https and proxied requests by a copy of base.
func NewHTTPTransport(base *http.Transport, maxConns int) http.RoundTripper {
	t := base.Clone()
	t.MaxIdleConns = max(maxConns, 2) * 2
	t.MaxIdleConnsPerHost = max(maxConns, 2)
	t.IdleConnTimeout = 90 * time.Second
	t.ResponseHeaderTimeout = 0 // calls may run long; the call timeout bounds them
	return newDirectTransport(t, t.MaxIdleConnsPerHost, t.IdleConnTimeout)
}
