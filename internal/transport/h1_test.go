package transport

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countingServer is an HTTP server that counts the connections it
// accepted and the requests it read.
type countingServer struct {
	*httptest.Server
	conns, requests atomic.Int64
}

func newCountingServer(t *testing.T, h http.HandlerFunc) *countingServer {
	t.Helper()
	return newCountingServerIdle(t, 0, h)
}

// newCountingServerIdle is newCountingServer closing connections idle for
// idle (0: never).
func newCountingServerIdle(t *testing.T, idle time.Duration, h http.HandlerFunc) *countingServer {
	t.Helper()
	s := &countingServer{}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		h(w, r)
	}))
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.conns.Add(1)
		}
	}
	s.Config.IdleTimeout = idle
	s.Start()
	t.Cleanup(s.Close)
	return s
}

func direct(maxIdle int) *directTransport {
	return newDirectTransport(http.DefaultTransport.(*http.Transport).Clone(), maxIdle, time.Minute)
}

// post sends a POST through rt and returns its body.
func post(t *testing.T, ctx context.Context, rt http.RoundTripper, url, body string) (string, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func echo(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	w.Write(b)
}

func TestDirectReusesAndFramesBodies(t *testing.T) {
	t.Parallel()
	chunked := newCountingServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		for _, c := range b { // flushed byte by byte: chunked encoding
			w.Write([]byte{c})
			w.(http.Flusher).Flush()
		}
	})
	sized := newCountingServer(t, echo)
	rt := direct(4)
	for _, s := range []*countingServer{chunked, sized} {
		for i := range 10 {
			want := fmt.Sprintf("message %d", i)
			got, err := post(t, context.Background(), rt, s.URL, want)
			if err != nil || got != want {
				t.Fatalf("call %d: %q, %v; want %q", i, got, err, want)
			}
		}
		if n := s.conns.Load(); n != 1 {
			t.Fatalf("10 sequential calls opened %d connections, want 1", n)
		}
	}
}

// TestDirectDropsConnectionsTheServerClosed: a pooled connection the
// server closed while it was idle (its keep-alive timeout) is not used:
// the next request goes out on a new one and succeeds.
func TestDirectDropsConnectionsTheServerClosed(t *testing.T) {
	t.Parallel()
	s := newCountingServerIdle(t, 50*time.Millisecond, echo)
	rt := direct(4)
	for i := range 3 {
		if got, err := post(t, context.Background(), rt, s.URL, "x"); err != nil || got != "x" {
			t.Fatalf("call %d: %q, %v", i, got, err)
		}
		time.Sleep(200 * time.Millisecond) // the server closes the idle connection
	}
	if n := s.conns.Load(); n != 3 {
		t.Fatalf("%d connections, want 3 (one per call)", n)
	}
}

// TestDirectClosesWhatCannotBeReused: a body closed before its end, a
// response read until the connection's end, "Connection: close" and bytes
// after a response each make the connection unusable; the next request
// gets a new one and its own answer.
func TestDirectClosesWhatCannotBeReused(t *testing.T) {
	t.Parallel()
	for name, answer := range map[string]string{
		"until close":      "HTTP/1.1 200 OK\r\n\r\nfirst",
		"connection close": "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nfirst",
		"bytes after":      "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirstHTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged",
		"early close":      "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\nfirst",
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			// The first request on the first connection gets the answer; any
			// other request, on whichever connection, "second". The server
			// keeps the connection open but for "until close": a client that
			// reused it would read what it should not, on one connection.
			addr, conns := rawServer(t, func(n int, c net.Conn, br *bufio.Reader) {
				for i := 0; ; i++ {
					if _, err := http.ReadRequest(br); err != nil {
						return
					}
					if n == 0 && i == 0 {
						io.WriteString(c, answer)
						if name == "until close" {
							return
						}
						continue
					}
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond")
				}
			})
			rt := direct(4)
			req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/", strings.NewReader("a"))
			resp, err := rt.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			b := make([]byte, 5)
			if _, err := io.ReadFull(resp.Body, b); err != nil || string(b) != "first" {
				t.Fatalf("first answer %q, %v", b, err)
			}
			if name != "early close" {
				io.Copy(io.Discard, resp.Body)
			}
			resp.Body.Close()
			got, err := post(t, context.Background(), rt, "http://"+addr+"/", "b")
			if err != nil || got != "second" {
				t.Fatalf("second answer %q, %v", got, err)
			}
			if n := conns.Load(); n != 2 {
				t.Fatalf("%d connections, want 2", n)
			}
		})
	}
}

// rawServer accepts connections and runs serve for each, numbered from 0.
func rawServer(t *testing.T, serve func(n int, c net.Conn, br *bufio.Reader)) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var open []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range open {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n := int(conns.Add(1) - 1)
			mu.Lock()
			open = append(open, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				serve(n, c, bufio.NewReader(c))
			}()
		}
	}()
	return ln.Addr().String(), &conns
}

// TestDirectCancelInterruptsTheRead: cancelling a request whose answer
// does not come ends it at once with the context's error.
func TestDirectCancelInterruptsTheRead(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	s := newCountingServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			select {
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		echo(w, r)
	})
	defer close(release)
	rt := direct(4)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := post(t, ctx, rt, s.URL+"/slow", "x")
		errc <- err
	}()
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled request: %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a cancelled request was still waiting")
	}
	// A body being read is interrupted the same way.
	stream := newCountingServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("head"))
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
	ctx, cancel = context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, stream.URL, nil)
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(50 * time.Millisecond)
		cancel()
	}()
	if _, err := io.ReadAll(resp.Body); err == nil {
		t.Fatal("a cancelled body read to its end")
	}
	resp.Body.Close()
	if got, err := post(t, context.Background(), rt, s.URL, "after"); err != nil || got != "after" {
		t.Fatalf("after the cancellations: %q, %v", got, err)
	}
	// Neither cancelled connection was used again.
	if n := s.conns.Load(); n != 2 {
		t.Fatalf("%d connections to the first server, want 2", n)
	}
	req, _ = http.NewRequest(http.MethodGet, stream.URL, nil)
	if resp, err = rt.RoundTrip(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if n := stream.conns.Load(); n != 2 {
		t.Fatalf("%d connections to the streaming server, want 2", n)
	}
}

// TestDirectBoundsTheResponseHead: headers without end are refused, not
// read into memory.
func TestDirectBoundsTheResponseHead(t *testing.T) {
	t.Parallel()
	addr, _ := rawServer(t, func(_ int, c net.Conn, br *bufio.Reader) {
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\n")
		line := "X-Filler: " + strings.Repeat("a", 1000) + "\r\n"
		for range 4000 { // 4 MB of headers
			if _, err := io.WriteString(c, line); err != nil {
				return
			}
		}
	})
	base := http.DefaultTransport.(*http.Transport).Clone()
	base.MaxResponseHeaderBytes = 64 << 10
	rt := newDirectTransport(base, 4, time.Minute)
	if _, err := post(t, context.Background(), rt, "http://"+addr+"/", "x"); err == nil || !strings.Contains(err.Error(), "too large") {
		t.Fatalf("4 MB of headers: %v, want a refusal", err)
	}
}

// TestDirectSkipsInformationalAnswers: 103 Early Hints before the answer
// is not the answer.
func TestDirectSkipsInformationalAnswers(t *testing.T) {
	t.Parallel()
	s := newCountingServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.WriteHeader(http.StatusCreated)
		w.Write([]byte("done"))
	})
	req, _ := http.NewRequest(http.MethodPost, s.URL, strings.NewReader("x"))
	resp, err := direct(4).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated || string(b) != "done" {
		t.Fatalf("got %d %q, want 201 done", resp.StatusCode, b)
	}
}

// TestDirectResendsOnlyWhatWasNotSent: a reused connection that fails
// while the request is written gets the request again on a new one (the
// server saw it once); one that fails after the request was written does
// not (the server may have acted on it), but for an idempotent GET.
func TestDirectResendsOnlyWhatWasNotSent(t *testing.T) {
	t.Parallel()
	s := newCountingServer(t, echo)
	rt := direct(4)
	var breakWrites atomic.Bool
	dial := rt.dial
	rt.dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		return &breakableConn{Conn: c, broken: &breakWrites}, err
	}
	if got, err := post(t, context.Background(), rt, s.URL, "one"); err != nil || got != "one" {
		t.Fatalf("first call: %q, %v", got, err)
	}
	breakWrites.Store(true) // the pooled connection's next write fails
	if got, err := post(t, context.Background(), rt, s.URL, "two"); err != nil || got != "two" {
		t.Fatalf("call over a broken connection: %q, %v", got, err)
	}
	if n := s.requests.Load(); n != 2 {
		t.Fatalf("the server saw %d requests, want 2", n)
	}

	// Written, then the connection ends without an answer: an error, once.
	var seen atomic.Int64
	var partial atomic.Bool
	addr, _ := rawServer(t, func(_ int, c net.Conn, br *bufio.Reader) {
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			if seen.Add(1) == 2 {
				if partial.Load() {
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-")
				}
				return // no (whole) answer: the connection closes
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	rt = direct(4)
	if got, err := post(t, context.Background(), rt, "http://"+addr+"/", "a"); err != nil || got != "ok" {
		t.Fatalf("first call: %q, %v", got, err)
	}
	if _, err := post(t, context.Background(), rt, "http://"+addr+"/", "b"); err == nil {
		t.Fatal("a call the server never answered succeeded")
	}
	time.Sleep(50 * time.Millisecond)
	if n := seen.Load(); n != 2 {
		t.Fatalf("the server saw %d requests, want 2 (the unanswered one not sent again)", n)
	}

	// The same for a GET (idempotent): sent again on a new connection.
	seen.Store(0)
	rt = direct(4)
	get := func() (string, error) {
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
		resp, err := rt.RoundTrip(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	if got, err := get(); err != nil || got != "ok" {
		t.Fatalf("first GET: %q, %v", got, err)
	}
	if got, err := get(); err != nil || got != "ok" {
		t.Fatalf("a GET whose connection ended unanswered: %q, %v; want it sent again", got, err)
	}
	if n := seen.Load(); n != 3 {
		t.Fatalf("the server saw %d GETs, want 3", n)
	}

	// But not once part of an answer came (as net/http).
	seen.Store(0)
	partial.Store(true)
	rt = direct(4)
	if got, err := get(); err != nil || got != "ok" {
		t.Fatalf("first GET: %q, %v", got, err)
	}
	if _, err := get(); err == nil {
		t.Fatal("a GET whose answer broke off succeeded")
	}
	time.Sleep(50 * time.Millisecond)
	if n := seen.Load(); n != 2 {
		t.Fatalf("the server saw %d GETs, want 2 (not sent again after part of an answer)", n)
	}
}

// breakableConn fails its writes while broken is set.
type breakableConn struct {
	net.Conn
	broken *atomic.Bool
}

func (c *breakableConn) Write(p []byte) (int, error) {
	if c.broken.Load() {
		c.broken.Store(false)
		c.Conn.Close()
		return 0, errors.New("broken pipe (test)")
	}
	return c.Conn.Write(p)
}

// TestDirectKeepsAtMostMaxIdle: connections beyond the pool's size are
// closed when their requests end; the pool's are closed after their idle
// time.
func TestDirectKeepsAtMostMaxIdle(t *testing.T) {
	t.Parallel()
	gate := make(chan struct{})
	s := newCountingServer(t, func(w http.ResponseWriter, r *http.Request) {
		<-gate
		echo(w, r)
	})
	rt := newDirectTransport(http.DefaultTransport.(*http.Transport).Clone(), 2, 100*time.Millisecond)
	var wg sync.WaitGroup
	for range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			post(t, context.Background(), rt, s.URL, "x")
		}()
	}
	for s.requests.Load() < 5 {
		time.Sleep(time.Millisecond)
	}
	close(gate)
	wg.Wait()
	idle := func() int {
		rt.mu.Lock()
		defer rt.mu.Unlock()
		n := 0
		for _, p := range rt.idle {
			n += len(p)
		}
		return n
	}
	if n := idle(); n != 2 {
		t.Fatalf("%d idle connections after 5 concurrent calls, want 2", n)
	}
	deadline := time.Now().Add(5 * time.Second)
	for idle() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d idle connections left past their idle time", idle())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestDirectLeavesTLSToNetHTTP: an https upstream is served by net/http's
// transport (with the TLS configuration given).
func TestDirectLeavesTLSToNetHTTP(t *testing.T) {
	t.Parallel()
	s := httptest.NewTLSServer(http.HandlerFunc(echo))
	defer s.Close()
	base := s.Client().Transport.(*http.Transport).Clone()
	rt := newDirectTransport(base, 4, time.Minute)
	if got, err := post(t, context.Background(), rt, s.URL, "secure"); err != nil || got != "secure" {
		t.Fatalf("%q, %v", got, err)
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if len(rt.idle) != 0 {
		t.Fatal("an https connection was pooled by the direct transport")
	}
}

// TestDirectRefusesInvalidHeaders: a header that would split the request
// on the wire is refused before anything is sent.
func TestDirectRefusesInvalidHeaders(t *testing.T) {
	t.Parallel()
	s := newCountingServer(t, echo)
	for name, h := range map[string][2]string{
		"value with CRLF": {"X-Key", "a\r\nX-Injected: 1"},
		"name with colon": {"X-Key: 1\r\nX", "b"},
	} {
		req, _ := http.NewRequest(http.MethodPost, s.URL, strings.NewReader("x"))
		req.Header[h[0]] = []string{h[1]}
		if _, err := direct(4).RoundTrip(req); err == nil || !strings.Contains(err.Error(), "invalid header") {
			t.Errorf("%s: %v, want a refusal", name, err)
		}
	}
	if n := s.requests.Load(); n != 0 {
		t.Fatalf("the server saw %d requests", n)
	}
}

// TestDirectLeavesLargeBodiesToNetHTTP: a server that refuses a large
// body before reading it (a 401) has its answer read, not a broken pipe:
// bodies over maxDirectBody go to net/http, which reads while it writes.
func TestDirectLeavesLargeBodiesToNetHTTP(t *testing.T) {
	t.Parallel()
	s := newCountingServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		w.WriteHeader(http.StatusUnauthorized)
	})
	rt := direct(4)
	for _, size := range []int{1 << 10, 4 << 20} {
		req, _ := http.NewRequest(http.MethodPost, s.URL, strings.NewReader(strings.Repeat("a", size)))
		resp, err := rt.RoundTrip(req)
		if err != nil {
			t.Fatalf("%d bytes: %v", size, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("%d bytes: status %d", size, resp.StatusCode)
		}
	}
}

// TestDirectNeverResendsWhatReachedTheServer: a request whose write fails
// after bytes of it were sent (here, a body longer than its declared
// length: the declared bytes all go out) is not sent again, even on a
// reused connection with a body that could be had again.
func TestDirectNeverResendsWhatReachedTheServer(t *testing.T) {
	t.Parallel()
	s := newCountingServer(t, echo)
	rt := direct(4)
	if _, err := post(t, context.Background(), rt, s.URL, "warm"); err != nil {
		t.Fatal(err)
	}
	const declared = 50000
	body := strings.Repeat("p", declared+5)
	req, _ := http.NewRequest(http.MethodPost, s.URL+"/pay", strings.NewReader(body))
	req.ContentLength = declared
	if _, err := rt.RoundTrip(req); err == nil {
		t.Fatal("a body longer than its length was sent without error")
	}
	time.Sleep(50 * time.Millisecond)
	if n := s.requests.Load(); n != 2 {
		t.Fatalf("the server saw %d requests, want 2 (the failed one once)", n)
	}
}

// TestDirectRefusesRequestsNetHTTPRefuses: no host, a method that is not
// a token.
func TestDirectRefusesRequestsNetHTTPRefuses(t *testing.T) {
	t.Parallel()
	rt := direct(4)
	req, _ := http.NewRequest(http.MethodPost, "http:///mcp", strings.NewReader("x"))
	if _, err := rt.RoundTrip(req); err == nil || !strings.Contains(err.Error(), "no host") {
		t.Errorf("no host: %v", err)
	}
	req, _ = http.NewRequest(http.MethodPost, "http://127.0.0.1:9/", nil)
	req.Method = "GET /x HTTP/1.1\r\nX:"
	if _, err := rt.RoundTrip(req); err == nil || !strings.Contains(err.Error(), "invalid method") {
		t.Errorf("bad method: %v", err)
	}
}

// TestDirectDoesNotPoolACancelledConnection: a request cancelled after
// its answer came, whose body is then read to its end from what was
// buffered (without the connection, whose deadline the cancellation set),
// does not give its connection to the pool; the next request gets a new
// one. A body read after Close fails as net/http's does.
func TestDirectDoesNotPoolACancelledConnection(t *testing.T) {
	t.Parallel()
	s := newCountingServer(t, echo)
	rt := direct(4)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.URL, strings.NewReader("abc"))
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	if b, err := io.ReadAll(resp.Body); err != nil || string(b) != "abc" {
		t.Fatalf("the buffered body: %q, %v", b, err)
	}
	rt.mu.Lock()
	pooled := len(rt.idle)
	rt.mu.Unlock()
	if pooled != 0 {
		t.Fatal("a connection whose request was cancelled went to the pool")
	}
	resp.Body.Close()
	if _, err := resp.Body.Read(make([]byte, 1)); !errors.Is(err, http.ErrBodyReadAfterClose) {
		t.Fatalf("read after close: %v", err)
	}
	if got, err := post(t, context.Background(), rt, s.URL, "next"); err != nil || got != "next" {
		t.Fatalf("next call: %q, %v", got, err)
	}
	if n := s.conns.Load(); n != 2 {
		t.Fatalf("%d connections, want 2", n)
	}
}

// FuzzDirectNeverMixesAnswers: whatever an upstream sends as its first
// answer (a malformed head, a body shorter or longer than it says, bytes
// after it, informational answers, a stream that never ends), the next
// call gets its own answer or an error, never bytes of the first: a
// connection is reused only when the first answer ended where its framing
// says. The server answers every later request "second".
func FuzzDirectNeverMixesAnswers(f *testing.F) {
	for _, seed := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n0\r\nX-Trailer: t\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirstHTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged",
		"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst",
		"HTTP/1.1 204 No Content\r\nContent-Length: 6\r\n\r\nforged",
		"HTTP/1.0 200 OK\r\n\r\nfirst",
		"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nfirst",
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nforged",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n3\r\nfor\r\n0\r\n\r\n",
		"garbage\r\n\r\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, first []byte) {
		if len(first) > 64<<10 {
			return
		}
		var answered atomic.Bool
		addr, _ := rawServer(t, func(_ int, c net.Conn, br *bufio.Reader) {
			for {
				req, err := http.ReadRequest(br)
				if err != nil {
					return
				}
				io.Copy(io.Discard, req.Body)
				if req.URL.Path == "/first" && answered.CompareAndSwap(false, true) {
					c.Write(first)
					continue
				}
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond")
			}
		})
		rt := direct(4)
		defer rt.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		post(t, ctx, rt, "http://"+addr+"/first", "1")
		cancel()
		ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		got, err := post(t, ctx, rt, "http://"+addr+"/second", "2")
		if err == nil && got != "second" {
			t.Fatalf("the second call got %q", got)
		}
	})
}
