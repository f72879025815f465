package mcpproxy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/authn"
	"github.com/portcullis-dev/portcullis/internal/identity"
	"github.com/portcullis-dev/portcullis/internal/reason"
	"github.com/portcullis-dev/portcullis/internal/transport"
	"github.com/portcullis-dev/portcullis/internal/wire"
)

// Authenticator establishes the principal of an HTTP request.
type Authenticator interface {
	Authenticate(r *http.Request) (*identity.Principal, error)
}

// HTTP front timings.
const (
	streamWriteTimeout = 10 * time.Second // one event to a slow agent
	keepAliveEvery     = 25 * time.Second // comments on idle GET streams
)

var errNoStream = errors.New("no stream for related messages")

// HTTPHandler serves MCP streamable HTTP for agents: POST carries
// messages (answered as JSON, or as an event stream when related messages
// come first), GET opens the stream for messages outside any request,
// DELETE ends the session. Every request is checked for its Host and Origin
// (DNS rebinding), authenticated, bounded and framed before a pipeline
// sees it; every refusal is audited.
func (p *Proxy) HTTPHandler(authn Authenticator) http.Handler {
	return &httpFront{p: p, authn: authn}
}

type httpFront struct {
	p     *Proxy
	authn Authenticator
}

func (f *httpFront) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := f.p
	if why := p.hosts.refuse(r); why != "" {
		e := audit.New(audit.TypeProtocol, audit.OutcomeDeny, reason.HostNotAllowed, p.opts.Now(), audit.Subject{RequestID: newRequestID(), RemoteAddr: r.RemoteAddr})
		e.Detail = truncate(why, 200)
		p.recordBackground(e)
		p.opts.Metrics.Refusal(reason.HostNotAllowed)
		writeJSON(w, http.StatusForbidden, []byte(`{"error":"host_not_allowed","request_id":`+string(wire.Quote(e.RequestID))+`}`))
		return
	}
	if r.Header.Get("Origin") != "" {
		// The host check let the origin through: a browser client of an
		// allowed origin may read the answers (CORS).
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", r.Header.Get("Origin"))
		h.Add("Vary", "Origin")
		h.Set("Access-Control-Expose-Headers", corsExposed)
	}
	switch r.Method {
	case http.MethodPost, http.MethodGet, http.MethodDelete:
	case http.MethodOptions:
		preflight(w, r)
		return
	default:
		w.Header().Set("Allow", "GET, POST, DELETE, OPTIONS")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	pr, err := f.authn.Authenticate(r)
	if err == nil && !pr.Expires.IsZero() && time.Now().After(pr.Expires) { // credentials: the real clock
		err = errors.New("credential expired")
	}
	if err != nil {
		f.refuseAuthn(w, r, err)
		return
	}
	switch r.Method {
	case http.MethodPost:
		f.post(w, r, pr)
	case http.MethodGet:
		f.get(w, r, pr)
	case http.MethodDelete:
		f.delete(w, r, pr)
	}
}

// session finds the request's session (taking it up from the store when
// this gateway does not hold it) and binds pr to it; it answers the
// request itself when that fails.
func (f *httpFront) session(w http.ResponseWriter, r *http.Request, pr *identity.Principal) *Session {
	sid := r.Header.Get(transport.HeaderSession)
	s := f.p.sessions.get(sid)
	var err error
	if s == nil {
		s, err = f.p.takeUp(r.Context(), sid, pr, r.RemoteAddr)
		var ref *refusal
		switch {
		case errors.Is(err, errNoSuchSession):
			f.refuseHTTP(w, r, pr, http.StatusNotFound, reason.SessionNotFound, "session not found")
			return nil
		case errors.As(err, &ref):
			e := audit.New(audit.TypeProtocol, audit.OutcomeDeny, ref.code, f.p.opts.Now(),
				audit.Subject{Agent: pr.Agent, User: pr.User, Credential: pr.CredentialID, SessionID: sid, RequestID: newRequestID(), RemoteAddr: r.RemoteAddr})
			e.Detail = ref.detail
			f.p.recordBackground(e)
			f.p.opts.Metrics.Refusal(ref.code)
			writeJSON(w, http.StatusServiceUnavailable, ref.message(nil, e.RequestID))
			return nil
		}
	}
	if err == nil {
		err = s.bind(pr)
	}
	if err != nil {
		who := audit.Subject{Agent: pr.Agent, User: pr.User, Credential: pr.CredentialID, SessionID: sid, RequestID: newRequestID(), RemoteAddr: r.RemoteAddr}
		e := audit.New(audit.TypeAuthn, audit.OutcomeDeny, reason.SessionHijack, f.p.opts.Now(), who)
		e.Detail = "the session belongs to another agent or user"
		f.p.recordBackground(e)
		f.p.opts.Metrics.Refusal(reason.SessionHijack)
		writeJSON(w, http.StatusForbidden, deny(reason.SessionHijack).message(nil, e.RequestID))
		return nil
	}
	if v := r.Header.Get(transport.HeaderProtocol); v != "" && !supportedVersion(v) {
		f.refuseHTTP(w, r, pr, http.StatusBadRequest, reason.BadProtocol, "unsupported protocol version "+truncate(v, 40))
		return nil
	}
	return s
}

func (f *httpFront) post(w http.ResponseWriter, r *http.Request, pr *identity.Principal) {
	p := f.p
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, p.opts.Limits.MaxMessageBytes))
	if err != nil {
		f.refuseFrame(w, r, pr, nil, ErrTooLarge)
		return
	}
	msgs, err := CheckMessage(body, p.limits())
	if err != nil {
		f.refuseFrame(w, r, pr, body, err)
		return
	}
	var s *Session
	opened := false // by this request: its end may tear the session down
	if r.Header.Get(transport.HeaderSession) == "" {
		if len(msgs) != 1 || msgs[0].Method != "initialize" {
			f.refuseHTTP(w, r, pr, http.StatusBadRequest, reason.NotInitialized, "Bad Request: no session ID; send initialize first")
			return
		}
		if s, err = p.openSessionFor(pr, false); err != nil {
			c := p.newCall(nil, pr, msgs[0], discard{}, "")
			p.refuse(r.Context(), c, deny(reason.TooManySessions))
			writeJSON(w, http.StatusServiceUnavailable, deny(reason.TooManySessions).message(msgs[0].IDBytes(), c.requestID))
			return
		}
		opened = true
		defer func() {
			if !s.isOpen() { // initialize refused: the session never existed
				p.sessions.remove(s)
			}
		}()
	} else if s = f.session(w, r, pr); s == nil {
		return
	}
	if !f.intentFromHeader(w, r, s, pr) {
		return
	}
	trace := r.Header.Get("traceparent")
	if len(msgs) == 1 && msgs[0].Kind != wire.Request {
		p.handle(r.Context(), s, pr, msgs[0], discard{}, trace)
		w.Header().Set(transport.HeaderSession, s.id)
		w.WriteHeader(http.StatusAccepted)
		return
	}
	if len(msgs) == 1 {
		x := newHTTPExchange(w, r, s.id)
		x.flushAnswer = opened
		p.handle(r.Context(), s, pr, msgs[0], x, trace)
		x.finish()
		return
	}
	f.batch(w, r, s, pr, msgs, trace)
}

// batch serves a JSON-RPC batch (protocol 2025-03-26): requests one after
// another, their answers in one JSON array.
func (f *httpFront) batch(w http.ResponseWriter, r *http.Request, s *Session, pr *identity.Principal, msgs []*wire.Message, trace string) {
	var answers [][]byte
	for _, m := range msgs {
		if m.Kind != wire.Request {
			f.p.handle(r.Context(), s, pr, m, discard{}, trace)
			continue
		}
		x := &collectExchange{}
		f.p.handle(r.Context(), s, pr, m, x, trace)
		if x.answer != nil {
			answers = append(answers, x.answer)
		}
	}
	w.Header().Set(transport.HeaderSession, s.id)
	if len(answers) == 0 {
		w.WriteHeader(http.StatusAccepted)
		return
	}
	out := []byte{'['}
	for i, a := range answers {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, a...)
	}
	writeJSON(w, http.StatusOK, append(out, ']'))
}

// get opens the session's stream for messages outside any request.
func (f *httpFront) get(w http.ResponseWriter, r *http.Request, pr *identity.Principal) {
	if a := r.Header.Get("Accept"); a != "" && !strings.Contains(a, "text/event-stream") && !strings.Contains(a, "*/*") {
		http.Error(w, "GET needs Accept: text/event-stream", http.StatusNotAcceptable)
		return
	}
	s := f.session(w, r, pr)
	if s == nil {
		return
	}
	rc := http.NewResponseController(w)
	var mu sync.Mutex
	started := false
	write := func(msg []byte) error {
		mu.Lock()
		defer mu.Unlock()
		if !started {
			sseHeaders(w, s.id)
			w.WriteHeader(http.StatusOK)
			started = true
		}
		rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
		if msg != nil {
			if err := writeEvent(w, msg); err != nil {
				return err
			}
		}
		return rc.Flush()
	}
	if err := write(nil); err != nil {
		return
	}
	if !s.out.attach(write) {
		return // another stream serves the session; this one ends at once
	}
	defer s.out.detach()
	tick := time.NewTicker(keepAliveEvery)
	defer tick.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-s.done:
			return
		case <-tick.C:
			mu.Lock()
			rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
			_, err := w.Write([]byte(": keepalive\n\n"))
			if err == nil {
				err = rc.Flush()
			}
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}
}

func (f *httpFront) delete(w http.ResponseWriter, r *http.Request, pr *identity.Principal) {
	if s := f.session(w, r, pr); s != nil {
		f.p.endSession(r.Context(), s)
		f.p.sessions.remove(s)
		w.WriteHeader(http.StatusOK)
	}
}

func (p *Proxy) limits() MessageLimits {
	l := p.opts.Limits
	return MessageLimits{MaxBytes: l.MaxMessageBytes, MaxDepth: l.MaxJSONDepth, MaxBatch: l.MaxBatch}
}

func (f *httpFront) refuseAuthn(w http.ResponseWriter, r *http.Request, err error) {
	code, status := reason.Unauthenticated, http.StatusUnauthorized
	challenge := authn.Challenge(r, f.p.opts.PublicURL, f.p.opts.Scopes)
	if errors.Is(err, authn.ErrInsufficientScope) {
		code, status = reason.InsufficientScope, http.StatusForbidden
		challenge = authn.ScopeChallenge(r, f.p.opts.PublicURL, f.p.opts.Scopes)
	}
	e := audit.New(audit.TypeAuthn, audit.OutcomeDeny, code, f.p.opts.Now(), audit.Subject{RequestID: newRequestID(), RemoteAddr: r.RemoteAddr})
	e.Detail = truncate(err.Error(), 300)
	f.p.recordBackground(e)
	f.p.opts.Metrics.Refusal(code)
	w.Header().Set("WWW-Authenticate", challenge)
	writeJSON(w, status, []byte(`{"error":"`+string(code)+`","request_id":`+string(wire.Quote(e.RequestID))+`}`))
}

// refuseFrame answers a message that failed the framing checks with a
// JSON-RPC error (echoing the request's id when it could be read) and
// audits it.
// refuseHTTP answers an authenticated request the front refuses before
// any pipeline (no session, an unknown one, a protocol version the gateway
// does not speak) with an HTTP status and a JSON-RPC error carrying text,
// as MCP's streamable HTTP transport has it, and records the refusal.
func (f *httpFront) refuseHTTP(w http.ResponseWriter, r *http.Request, pr *identity.Principal, status int, code reason.Code, text string) {
	who := audit.Subject{Agent: pr.Agent, User: pr.User, Credential: pr.CredentialID, SessionID: truncate(r.Header.Get(transport.HeaderSession), 100), RequestID: newRequestID(), RemoteAddr: r.RemoteAddr}
	e := audit.New(audit.TypeProtocol, audit.OutcomeDeny, code, f.p.opts.Now(), who)
	e.Detail = text
	f.p.recordBackground(e)
	f.p.opts.Metrics.Refusal(code)
	ref := deny(code)
	ref.rpcCode, ref.text = wire.CodeInvalidRequest, text
	writeJSON(w, status, ref.message(nil, e.RequestID))
}

func (f *httpFront) refuseFrame(w http.ResponseWriter, r *http.Request, pr *identity.Principal, body []byte, cause error) {
	why, code := frameRefusal(cause)
	status := http.StatusBadRequest
	switch why {
	case reason.MessageTooLarge:
		status = http.StatusRequestEntityTooLarge
	case reason.MethodNotAllowed:
		status = http.StatusOK
	}
	who := audit.Subject{Agent: pr.Agent, Credential: pr.CredentialID, SessionID: r.Header.Get(transport.HeaderSession), RequestID: newRequestID(), RemoteAddr: r.RemoteAddr}
	e := audit.New(audit.TypeProtocol, audit.OutcomeDeny, why, f.p.opts.Now(), who)
	e.Detail = truncate(cause.Error(), 300)
	id, method := peekIDMethod(body)
	e.Method = method
	f.p.recordBackground(e)
	f.p.opts.Metrics.Refusal(why)
	writeJSON(w, status, frameAnswer(id, code, why, e.RequestID))
}

// eventBuffers recycles the buffers events are framed in (an answer's
// event per call showed in allocation profiles); a writer does not keep
// what it was given.
var eventBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// maxKeptEvent bounds a buffer kept for reuse.
const maxKeptEvent = 64 << 10

// writeEvent writes msg to w as one server-sent event.
func writeEvent(w io.Writer, msg []byte) (err error) {
	withEvent(msg, func(b []byte) { _, err = w.Write(b) })
	return err
}

// withEvent calls write with msg framed as one server-sent event, in a
// recycled buffer that write must not keep.
func withEvent(msg []byte, write func([]byte)) {
	bp := eventBuffers.Get().(*[]byte)
	b := wire.AppendEvent((*bp)[:0], "", msg)
	write(b)
	if cap(b) <= maxKeptEvent {
		*bp = b
		eventBuffers.Put(bp)
	}
}

func writeJSON(w http.ResponseWriter, status int, body []byte) {
	w.Header()["Content-Type"] = jsonType
	w.WriteHeader(status)
	w.Write(body)
}

func sseHeaders(w http.ResponseWriter, sid string) {
	h := w.Header()
	h["Content-Type"], h["Cache-Control"], h["X-Accel-Buffering"] = sseType, noCache, noBuffering
	if sid != "" {
		h.Set(transport.HeaderSession, sid)
	}
}

// Shared response header values (canonical keys; never modified).
var (
	sseType     = []string{"text/event-stream"}
	noCache     = []string{"no-cache"}
	noBuffering = []string{"no"}
	jsonType    = []string{"application/json"}
)

// httpExchange answers one POSTed request: as JSON when the answer comes
// first, or as an event stream once a related message must go before it.
type httpExchange struct {
	w   http.ResponseWriter
	rc  *http.ResponseController
	sid string
	sse bool // the agent accepts an event stream

	mu     sync.Mutex
	stream bool
	done   bool
	// streamed: answer as an event stream even without related messages
	// (the upstream answered that way: the agent sees what it would see
	// direct).
	streamed bool
	// flushAnswer: the handler may not return right after the answer (a
	// refused initialize closes its upstream links first), so the answer
	// is flushed on its own.
	flushAnswer bool
	// held is the agent's connection when it can hold an answer's writes
	// (HTTP/1 on the agent listener).
	held *heldConn
}

// preferStream makes the answer an event stream, as the upstream's was.
func (x *httpExchange) preferStream() {
	x.mu.Lock()
	x.streamed = true
	x.mu.Unlock()
}

func newHTTPExchange(w http.ResponseWriter, r *http.Request, sid string) *httpExchange {
	a := r.Header.Get("Accept")
	x := &httpExchange{w: w, rc: http.NewResponseController(w), sid: sid, sse: a == "" || strings.Contains(a, "text/event-stream") || strings.Contains(a, "*/*")}
	if r.ProtoMajor == 1 {
		x.held = heldConnOf(r.Context())
	}
	return x
}

func (x *httpExchange) send(msg []byte) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.done || !x.sse {
		return errNoStream
	}
	if !x.stream {
		sseHeaders(x.w, x.sid)
		x.w.WriteHeader(http.StatusOK)
		x.stream = true
	}
	return x.event(msg)
}

func (x *httpExchange) event(msg []byte) error {
	x.rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
	if err := writeEvent(x.w, msg); err != nil {
		return err
	}
	return x.rc.Flush()
}

func (x *httpExchange) reply(msg []byte) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.done {
		return
	}
	x.done = true
	if !x.stream && x.streamed && x.sse {
		sseHeaders(x.w, x.sid)
		if !x.flushAnswer {
			// The answer is the whole stream: one event, with its length.
			x.rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
			withEvent(msg, x.answerWhole)
			return
		}
		x.w.WriteHeader(http.StatusOK)
		x.stream = true
	}
	if x.stream && x.flushAnswer {
		x.event(msg)
		return
	}
	if x.stream {
		// The answer ends the exchange and the handler returns right
		// after it: net/http then writes what is still buffered with the
		// end of the stream (for an answer under its 2 KB buffer, in one
		// write with a Content-Length when nothing was flushed before), so
		// the answer is not flushed on its own.
		x.rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
		writeEvent(x.w, msg)
		return
	}
	x.w.Header().Set(transport.HeaderSession, x.sid)
	x.w.Header()["Content-Type"] = jsonType
	x.answerWhole(msg)
}

// answerWhole answers with body b, the whole response, headers not yet
// sent: with its Content-Length (net/http would otherwise chunk a body
// over its 2 KB buffer and end it in a write of its own after the
// handler), and, when the connection can hold writes and b is from
// holdFrom to maxHeld bytes, in one write (front_conn.go).
func (x *httpExchange) answerWhole(b []byte) {
	x.w.Header()["Content-Length"] = []string{strconv.Itoa(len(b))}
	if x.held != nil && len(b) >= holdFrom && len(b) <= maxHeld {
		x.held.hold()
		defer x.held.release() // after the flush; a failed write closes the connection
		defer x.rc.Flush()
	}
	x.w.WriteHeader(http.StatusOK)
	x.w.Write(b)
}

// holdFrom is the smallest answer a connection holds writes for: net/http
// writes a smaller one (with its headers) in one write already.
const holdFrom = 2 << 10

// finish ends an exchange that was not answered (the agent cancelled it).
func (x *httpExchange) finish() {
	x.mu.Lock()
	defer x.mu.Unlock()
	if !x.done && !x.stream {
		x.w.WriteHeader(http.StatusAccepted)
	}
	x.done = true
}

// collectExchange keeps the answer (batches); related messages go to the
// session's outbox.
type collectExchange struct{ answer []byte }

func (x *collectExchange) send([]byte) error { return errNoStream }
func (x *collectExchange) reply(msg []byte) {
	if x.answer == nil {
		x.answer = msg
	}
}

// CORS: what a browser client may send and read.
const (
	corsMethods = "GET, POST, DELETE"
	corsHeaders = "Authorization, Content-Type, Accept, DPoP, Mcp-Session-Id, Mcp-Protocol-Version, Last-Event-ID, Portcullis-Intent, traceparent"
	corsExposed = "Mcp-Session-Id, Mcp-Protocol-Version, WWW-Authenticate"
	corsMaxAge  = "600"
)

// preflight answers a CORS preflight (an OPTIONS request from a browser,
// before credentials), for an origin the host check allowed: the methods
// and headers MCP uses. It grants nothing: the real request is
// authenticated as any other.
func preflight(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Allow", "GET, POST, DELETE, OPTIONS")
	if r.Header.Get("Origin") == "" {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	switch r.Header.Get("Access-Control-Request-Method") {
	case http.MethodGet, http.MethodPost, http.MethodDelete:
	default:
		http.Error(w, "method not allowed", http.StatusForbidden)
		return
	}
	h.Set("Access-Control-Allow-Methods", corsMethods)
	h.Set("Access-Control-Allow-Headers", corsHeaders)
	h.Set("Access-Control-Max-Age", corsMaxAge)
	w.WriteHeader(http.StatusNoContent)
}

// discard answers nothing (notifications, internal refusals).
type discard struct{}

func (discard) send([]byte) error { return errNoStream }
func (discard) reply([]byte)      {}

// hostCheck refuses requests whose Host or Origin a browser could have
// been tricked into sending (DNS rebinding, cross-site requests).
type hostCheck struct {
	hosts   map[string]bool // lower-case host names; "*" for any
	origins map[string]bool // scheme://host[:port]; "*" for any
}

var loopbackNames = []string{"localhost", "127.0.0.1", "::1"}

func newHostCheck(hosts, origins []string) hostCheck {
	h := hostCheck{}
	if len(hosts) > 0 {
		h.hosts = map[string]bool{}
		for _, x := range hosts {
			h.hosts[strings.ToLower(stripPort(x))] = true
		}
	}
	if len(origins) > 0 {
		h.origins = map[string]bool{}
		for _, o := range origins {
			h.origins[strings.ToLower(strings.TrimRight(o, "/"))] = true
		}
	}
	return h
}

// refuse returns why r is refused, or "".
func (h hostCheck) refuse(r *http.Request) string {
	loop := onLoopback(r)
	host := strings.ToLower(stripPort(r.Host))
	switch {
	case h.hosts != nil:
		if !h.hosts["*"] && !h.hosts[host] {
			return "Host " + host + " is not allowed"
		}
	case loop:
		if !isLoopbackName(host) {
			return "Host " + host + " is not a loopback name (DNS rebinding?)"
		}
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return ""
	}
	o := strings.ToLower(strings.TrimRight(origin, "/"))
	if h.origins != nil {
		if h.origins["*"] || h.origins[o] {
			return ""
		}
		return "Origin " + truncate(origin, 100) + " is not allowed"
	}
	if u, err := url.Parse(o); err == nil && loop && isLoopbackName(stripPort(u.Host)) {
		return ""
	}
	return "Origin " + truncate(origin, 100) + " is not allowed"
}

func stripPort(h string) string {
	if host, _, err := net.SplitHostPort(h); err == nil {
		return strings.Trim(host, "[]")
	}
	return strings.Trim(h, "[]")
}

func isLoopbackName(h string) bool {
	for _, n := range loopbackNames {
		if h == n {
			return true
		}
	}
	return false
}

func onLoopback(r *http.Request) bool {
	a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !ok {
		return true // unknown: the stricter rule
	}
	if tcp, ok := a.(*net.TCPAddr); ok {
		return tcp.IP.IsLoopback()
	}
	return true
}

var _ = context.Background
