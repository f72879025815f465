package mcpproxy

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/transport"
	"github.com/portcullis-dev/portcullis/internal/wire"
)

// writeLog records the size of every write to the connections of a
// countingListener.
type writeLog struct {
	mu    sync.Mutex
	sizes []int
}

func (l *writeLog) reset() {
	l.mu.Lock()
	l.sizes = nil
	l.mu.Unlock()
}

func (l *writeLog) largest() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Max(append([]int{0}, l.sizes...))
}

type countingListener struct {
	net.Listener
	log *writeLog
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countedConn{c, l.log}, nil
}

type countedConn struct {
	net.Conn
	log *writeLog
}

func (c countedConn) Write(p []byte) (int, error) {
	c.log.mu.Lock()
	c.log.sizes = append(c.log.sizes, len(p))
	c.log.mu.Unlock()
	return c.Conn.Write(p)
}

// recordingConn is a connection that only records its writes.
type recordingConn struct {
	net.Conn
	writes [][]byte
	err    error
	closed bool
}

func (c *recordingConn) Close() error {
	c.closed = true
	return nil
}

func (c *recordingConn) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	c.writes = append(c.writes, slices.Clone(p))
	return len(p), nil
}

// TestHeldConnWritesOnce: writes made while a connection holds go out in
// one write at release, in order; writes outside a hold go out as made.
func TestHeldConnWritesOnce(t *testing.T) {
	t.Parallel()
	rc := &recordingConn{}
	c := &heldConn{Conn: rc}
	c.Write([]byte("before"))
	for round := range 2 { // the second round reuses the buffer
		c.hold()
		c.Write([]byte("HTTP/1.1 200 OK\r\n\r\n"))
		c.Write([]byte("body-" + strconv.Itoa(round)))
		if len(rc.writes) != 1+round {
			t.Fatalf("round %d: %d writes reached the connection while held", round, len(rc.writes))
		}
		if err := c.release(); err != nil {
			t.Fatal(err)
		}
		if got, want := string(rc.writes[len(rc.writes)-1]), "HTTP/1.1 200 OK\r\n\r\nbody-"+strconv.Itoa(round); got != want {
			t.Fatalf("round %d: released %q, want %q", round, got, want)
		}
	}
	if err := c.release(); err != nil || len(rc.writes) != 3 {
		t.Fatalf("a release with nothing held wrote (%d writes, %v)", len(rc.writes), err)
	}
	c.Write([]byte("after"))
	if string(rc.writes[0]) != "before" || string(rc.writes[3]) != "after" {
		t.Fatalf("writes outside a hold: %q", rc.writes)
	}
	rc.err = io.ErrClosedPipe
	c.hold()
	c.Write([]byte("lost"))
	if rc.closed {
		t.Fatal("closed before the release")
	}
	if err := c.release(); err != io.ErrClosedPipe {
		t.Fatalf("release on a broken connection: %v", err)
	}
	// net/http was told the held writes went: the connection must end
	// rather than carry on with part of an answer.
	if !rc.closed {
		t.Fatal("a failed release left the connection open")
	}
	rc.err = nil
	if n, err := c.Write([]byte("more")); err != io.ErrClosedPipe || n != 0 || len(rc.writes) != 4 {
		t.Fatalf("a write after a failed release: %d, %v (%d writes)", n, err, len(rc.writes))
	}
}

// TestLargeAnswerLeavesInOneWrite: an answer larger than net/http's 4 KB
// connection buffer reaches the agent in one write with its
// Content-Length, as an event stream (the upstream answered with one) and
// as JSON (the agent accepts only JSON), over plain HTTP and over TLS
// (the connection held beneath it).
func TestLargeAnswerLeavesInOneWrite(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("all quiet on the upstream. ", 240) // 6,480 bytes
	up := mcp.NewServer(&mcp.Implementation{Name: "upstream"}, nil)
	up.AddTool(&mcp.Tool{Name: "big", InputSchema: map[string]any{"type": "object"}}, func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: big}}}, nil
	})
	upSrv := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return up }, nil))
	t.Cleanup(upSrv.Close)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	r := newRigDialers(t, "none", nil, map[string]func(config.Limits) transport.Dialer{"up": func(l config.Limits) transport.Dialer {
		d, err := HTTPDialer(&config.HTTPServer{URL: upSrv.URL}, t.TempDir(), nil, 4, l, log, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}}, nil)

	for _, mode := range []string{"http", "tls", "h2"} {
		tlsOn := mode != "http"
		writes := &writeLog{}
		srv := httptest.NewUnstartedServer(r.p.HTTPHandler(agentHeader{}))
		srv.Listener = HoldingListener(countingListener{srv.Listener, writes})
		srv.Config.ConnContext = ConnContext
		srv.EnableHTTP2 = mode == "h2"
		if tlsOn {
			srv.StartTLS()
		} else {
			srv.Start()
		}
		base := srv.Client().Transport
		lengths := &sync.Map{} // content type -> Content-Length of the last large answer
		client := &http.Client{Transport: roundTripFunc(func(req *http.Request) (*http.Response, error) {
			req = req.Clone(req.Context())
			req.Header.Set("X-Agent", "agent")
			resp, err := base.RoundTrip(req)
			if err == nil && resp.ContentLength > int64(len(big)) {
				lengths.Store(resp.Header.Get("Content-Type"), resp.ContentLength)
			}
			return resp, err
		})}
		s, err := mcp.NewClient(&mcp.Implementation{Name: "agent"}, nil).Connect(context.Background(), &mcp.StreamableClientTransport{
			Endpoint: srv.URL, HTTPClient: client, MaxRetries: -1, DisableStandaloneSSE: true}, nil)
		if err != nil {
			t.Fatal(err)
		}

		// As an event stream, as the upstream answered.
		writes.reset()
		res, err := s.CallTool(context.Background(), &mcp.CallToolParams{Name: "big"})
		if err != nil {
			t.Fatal(err)
		}
		if res.IsError || len(res.Content) != 1 || res.Content[0].(*mcp.TextContent).Text != big {
			t.Fatalf("%s: the event-stream answer came back altered", mode)
		}
		if n := writes.largest(); n < len(big) && mode != "h2" { // h2: never held (other streams share the connection)
			t.Errorf("%s: the event-stream answer left in writes of at most %d bytes (%d to send)", mode, n, len(big))
		}
		if _, ok := lengths.Load("text/event-stream"); !ok {
			t.Errorf("%s: the event-stream answer had no Content-Length", mode)
		}

		// As JSON, the only form the agent accepts.
		writes.reset()
		req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"big"}}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json")
		req.Header.Set(transport.HeaderSession, s.ID())
		req.Header.Set(transport.HeaderProtocol, "2025-11-25")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if (mode == "h2") != (resp.ProtoMajor == 2) {
			t.Fatalf("%s: answered over %s", mode, resp.Proto)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		m, err := wire.Parse(body, 0)
		if err != nil || m.Kind != wire.Response || !strings.Contains(string(body), big) || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("%s: the JSON answer: %v, %s", mode, err, body[:min(len(body), 200)])
		}
		if resp.ContentLength != int64(len(body)) {
			t.Errorf("%s: the JSON answer's Content-Length is %d for %d bytes", mode, resp.ContentLength, len(body))
		}
		if n := writes.largest(); n < len(body) && mode != "h2" {
			t.Errorf("%s: the JSON answer left in writes of at most %d bytes (%d to send)", mode, n, len(body))
		}
		s.Close()
		srv.Close()
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// BenchmarkLargeAnswer: round trips over loopback HTTP/1.1 to a handler
// answering a 4 KB result as one event, written as answerWhole writes it
// on a holding connection (one write) and as net/http writes it alone
// (chunked: the first 4 KB, then the rest and the end).
func BenchmarkLargeAnswer(b *testing.B) {
	msg := wire.NewResponse([]byte("1"), []byte(`{"content":[{"type":"text","text":"`+strings.Repeat("x", 4096)+`"}]}`))
	for _, held := range []bool{false, true} {
		name := "net/http"
		if held {
			name = "held"
		}
		b.Run(name, func(b *testing.B) {
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				x := newHTTPExchange(w, r, "sid")
				if !held {
					x.held = nil
					sseHeaders(w, "sid")
					writeEvent(w, msg)
					return
				}
				x.preferStream()
				x.reply(msg)
			}))
			srv.Listener = HoldingListener(srv.Listener)
			srv.Config.ConnContext = ConnContext
			srv.Start()
			defer srv.Close()
			client := srv.Client()
			for b.Loop() {
				resp, err := client.Post(srv.URL, "application/json", strings.NewReader(`{}`))
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
}
