package transport

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/portcullis-dev/portcullis/internal/wire"
)

// server is a Go SDK server with a tool that reports progress and logs
// before answering, and that changes its tool list on request.
func server() *mcp.Server {
	s := mcp.NewServer(&mcp.Implementation{Name: "t", Version: "1"}, nil)
	s.AddTool(&mcp.Tool{Name: "work", InputSchema: map[string]any{"type": "object"}}, func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		if tok := req.Params.GetProgressToken(); tok != nil {
			for i := 1; i <= 3; i++ {
				req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{ProgressToken: tok, Progress: float64(i), Total: 3})
			}
		}
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "done"}}}, nil
	})
	s.AddTool(&mcp.Tool{Name: "grow", InputSchema: map[string]any{"type": "object"}}, func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		s.AddTool(&mcp.Tool{Name: "new", InputSchema: map[string]any{"type": "object"}}, func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return &mcp.CallToolResult{}, nil
		})
		return &mcp.CallToolResult{}, nil
	})
	return s
}

func parse(t *testing.T, s string) *wire.Message {
	t.Helper()
	m, err := wire.Parse([]byte(s), 64)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

const initReq = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`

// exercise runs the same exchange over any Conn: initialize, a call with
// progress (related, in order, before the answer), and a list change
// delivered to Listen.
func exercise(t *testing.T, c Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := c.RoundTrip(ctx, parse(t, initReq), func(*wire.Message) {})
	if err != nil || res.Kind != wire.Response {
		t.Fatalf("initialize: %v %v", res, err)
	}
	c.Negotiated("2025-11-25")
	if err := c.Send(ctx, []byte(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)); err != nil {
		t.Fatal(err)
	}
	unrelated := make(chan string, 16)
	c.Listen(func(m *wire.Message) { unrelated <- m.Method })
	for i := 0; i < 20; i++ {
		var got []string
		req := fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"work","_meta":{"progressToken":"p%d"}}}`, 10+i, i)
		res, err := c.RoundTrip(ctx, parse(t, req), func(m *wire.Message) {
			p, _ := wire.Int(m.Raw, m.Param("progress"))
			got = append(got, fmt.Sprint(p))
		})
		if err != nil || res.Kind != wire.Response || !strings.Contains(string(res.Raw), "done") {
			t.Fatalf("call: %s %v", res.Raw, err)
		}
		if strings.Join(got, ",") != "1,2,3" {
			t.Fatalf("call %d: progress %v before the answer", i, got)
		}
	}
	if _, err := c.RoundTrip(ctx, parse(t, `{"jsonrpc":"2.0","id":99,"method":"tools/call","params":{"name":"grow"}}`), func(*wire.Message) {}); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-unrelated:
		if m != "notifications/tools/list_changed" {
			t.Fatalf("unrelated %s", m)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("list change not delivered")
	}
	c.Close()
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("not done after close")
	}
	if _, err := c.RoundTrip(ctx, parse(t, `{"jsonrpc":"2.0","id":100,"method":"ping"}`), func(*wire.Message) {}); err == nil {
		t.Fatal("round trip after close")
	}
}

func TestPipeConn(t *testing.T) {
	t.Parallel()
	srv := server()
	c, err := Pipe(context.Background(), func(ctx context.Context, r io.ReadCloser, w io.WriteCloser) error {
		ss, err := srv.Connect(ctx, &mcp.IOTransport{Reader: r, Writer: w}, nil)
		if err != nil {
			return err
		}
		return ss.Wait()
	}, 1<<20, 64, nil)
	if err != nil {
		t.Fatal(err)
	}
	exercise(t, c)
}

func TestHTTPConn(t *testing.T) {
	t.Parallel()
	for _, jsonResponse := range []bool{false, true} {
		t.Run(fmt.Sprint("json=", jsonResponse), func(t *testing.T) {
			t.Parallel()
			srv := server()
			h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, &mcp.StreamableHTTPOptions{JSONResponse: jsonResponse})
			ts := httptest.NewServer(h)
			defer ts.Close()
			c := NewHTTPConn(ts.URL, ts.Client(), http.Header{"X-Test": {"1"}}, 1<<20, 64, nil)
			if jsonResponse {
				// In JSON mode progress goes to the GET stream, not the
				// answer: only the exchange and the list change are checked.
				ctx := context.Background()
				if _, err := c.RoundTrip(ctx, parse(t, initReq), func(*wire.Message) {}); err != nil {
					t.Fatal(err)
				}
				if c.SessionID() == "" {
					t.Fatal("no session id")
				}
				c.Close()
				return
			}
			exercise(t, c)
		})
	}
}

// TestHTTPResumesADroppedAnswer: a server that closes the answer's stream
// after a priming event, and sends the response on a GET with Last-Event-ID
// (SEP-1699 polling).
func TestHTTPResumesADroppedAnswer(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var sawResume string
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodPost:
			body, _ := io.ReadAll(r.Body)
			m, _ := wire.Parse(body, 64)
			w.Header().Set("Content-Type", "text/event-stream")
			w.Header().Set(HeaderSession, "s1")
			if m.Method == "initialize" {
				w.Write(wire.AppendEvent(nil, "", wire.NewResponse(m.IDBytes(), []byte(`{}`))))
				return
			}
			w.Write([]byte("id: ev-1\nretry: 10\ndata:\n\n"))
		case http.MethodGet:
			mu.Lock()
			sawResume = r.Header.Get("Last-Event-ID")
			mu.Unlock()
			w.Header().Set("Content-Type", "text/event-stream")
			w.Write(wire.AppendEvent(nil, "ev-2", []byte(`{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"x"}}`)))
			w.Write(wire.AppendEvent(nil, "ev-3", []byte(`{"jsonrpc":"2.0","id":7,"result":{"ok":true}}`)))
		}
	}))
	defer ts.Close()
	c := NewHTTPConn(ts.URL, ts.Client(), nil, 1<<20, 64, nil)
	defer c.Close()
	ctx := context.Background()
	if _, err := c.RoundTrip(ctx, parse(t, initReq), func(*wire.Message) {}); err != nil {
		t.Fatal(err)
	}
	var related []string
	res, err := c.RoundTrip(ctx, parse(t, `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"x"}}`), func(m *wire.Message) { related = append(related, m.Method) })
	if err != nil || !strings.Contains(string(res.Raw), `"ok":true`) {
		t.Fatalf("resumed answer: %v %v", res, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if sawResume != "ev-1" || len(related) != 1 {
		t.Fatalf("resumed with Last-Event-ID %q, related %v", sawResume, related)
	}
}

// answerThenHold answers every POST with `{}` on an event stream, and ends
// the stream hold() after the answer.
func answerThenHold(hold func() time.Duration) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		body, _ := io.ReadAll(r.Body)
		m, _ := wire.Parse(body, 64)
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set(HeaderSession, "s1")
		w.Write(wire.AppendEvent(nil, "", wire.NewResponse(m.IDBytes(), []byte(`{}`))))
		w.(http.Flusher).Flush()
		time.Sleep(hold())
	}
}

// TestHTTPReusesConnections: a server that ends an answer's event stream a
// moment after sending the answer still gets its connection reused, not a
// new TCP connection per call.
func TestHTTPReusesConnections(t *testing.T) {
	t.Parallel()
	// 20 ms: long enough that the answer is read before the stream ends
	// even on a loaded machine (lateEnds below counts every call).
	ts := httptest.NewUnstartedServer(answerThenHold(func() time.Duration { return 20 * time.Millisecond }))
	var mu sync.Mutex
	opened := 0
	ts.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			mu.Lock()
			opened++
			mu.Unlock()
		}
	}
	ts.Start()
	defer ts.Close()
	client := &http.Client{Transport: NewHTTPTransport(http.DefaultTransport.(*http.Transport), 4)}
	c := NewHTTPConn(ts.URL, client, nil, 1<<20, 64, nil)
	defer c.Close()
	// Each call's connection must go back to the pool (the stream read to
	// its end in the background) before the next call starts.
	idle := make(chan error, 1)
	trace := &httptrace.ClientTrace{PutIdleConn: func(err error) { idle <- err }}
	ctx, cancel := context.WithTimeout(httptrace.WithClientTrace(context.Background(), trace), 10*time.Second)
	defer cancel()
	const calls = 20
	for i := range calls {
		call := fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"work"}}`, i+2)
		res, err := c.RoundTrip(ctx, parse(t, call), func(*wire.Message) {})
		if err != nil || res.Kind != wire.Response {
			t.Fatalf("call %d: %v %v", i, res, err)
		}
		select {
		case err := <-idle:
			if err != nil {
				t.Fatalf("call %d: its connection was not kept: %v", i, err)
			}
		case <-ctx.Done():
			t.Fatalf("call %d: its connection never went back to the pool", i)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if opened != 1 {
		t.Fatalf("%d calls opened %d connections", calls, opened)
	}
	if n := c.lateEnds.Load(); n != calls {
		t.Fatalf("%d of %d streams ended after their answer, want all", n, calls)
	}
}

// TestHTTPStreamEndingWithItsAnswerIsNotAwaited: a stream whose end comes
// with its answer (in one write) is closed at once, on the caller's
// goroutine, and its connection reused.
func TestHTTPStreamEndingWithItsAnswerIsNotAwaited(t *testing.T) {
	t.Parallel()
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		m, _ := wire.Parse(body, 64)
		w.Header().Set("Content-Type", "text/event-stream")
		// Not flushed: net/http writes the event with the stream's end.
		w.Write(wire.AppendEvent(nil, "", wire.NewResponse(m.IDBytes(), []byte(`{}`))))
	}))
	var opened atomic.Int64
	ts.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			opened.Add(1)
		}
	}
	ts.Start()
	defer ts.Close()
	c := NewHTTPConn(ts.URL, &http.Client{Transport: NewHTTPTransport(http.DefaultTransport.(*http.Transport), 4)}, nil, 1<<20, 64, nil)
	defer c.Close()
	const calls = 20
	for i := range calls {
		res, err := c.RoundTrip(context.Background(), parse(t, fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"x"}}`, i+2)), func(*wire.Message) {})
		if err != nil || res.Kind != wire.Response {
			t.Fatalf("call %d: %v %v", i, res, err)
		}
	}
	if n := c.lateEnds.Load(); n != 0 {
		t.Fatalf("%d of %d streams that ended with their answer were drained after it", n, calls)
	}
	if n := opened.Load(); n != 1 {
		t.Fatalf("%d calls opened %d connections", calls, n)
	}
}

// TestHTTPSlowStreamEndIsNotAwaited: a server that keeps an answer's
// stream open after the answer is marked slow, so that later answers do
// not wait for its streams to end; one that ends them at once is not.
func TestHTTPSlowStreamEndIsNotAwaited(t *testing.T) {
	t.Parallel()
	var hold atomic.Int64 // how long the stream stays open after the answer
	ts := httptest.NewServer(answerThenHold(func() time.Duration { return time.Duration(hold.Load()) }))
	defer ts.Close()
	c := NewHTTPConn(ts.URL, ts.Client(), nil, 1<<20, 64, nil)
	defer c.Close()
	call := func(id int) {
		t.Helper()
		res, err := c.RoundTrip(context.Background(), parse(t, fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"x"}}`, id)), func(*wire.Message) {})
		if err != nil || res.Kind != wire.Response {
			t.Fatalf("call %d: %v %v", id, res, err)
		}
	}
	waitFor := func(slow bool) {
		t.Helper()
		for i := 0; c.slowEnd.Load() != slow; i++ {
			if i == 500 {
				t.Fatalf("slowEnd never became %v", slow)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	hold.Store(int64(300 * time.Millisecond))
	call(1)
	waitFor(true)
	// A stream that ends with or right after its answer clears it. On a
	// loaded machine one such end may still be read late: a few calls.
	hold.Store(0)
	for id := 2; c.slowEnd.Load(); id++ {
		if id == 50 {
			t.Fatal("streams ending with their answers never cleared slowEnd")
		}
		call(id)
		time.Sleep(20 * time.Millisecond)
	}
}

func TestHTTPErrorStatusCarriesTheServersError(t *testing.T) {
	t.Parallel()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		w.Write([]byte(`{"jsonrpc":"2.0","id":null,"error":{"code":-32000,"message":"Bad Request: Server not initialized"}}`))
	}))
	defer ts.Close()
	c := NewHTTPConn(ts.URL, ts.Client(), nil, 1<<20, 64, nil)
	defer c.Close()
	res, err := c.RoundTrip(context.Background(), parse(t, `{"jsonrpc":"2.0","id":5,"method":"ping"}`), func(*wire.Message) {})
	if err != nil || res.Kind != wire.ErrorReply || string(res.IDBytes()) != "5" {
		t.Fatalf("%v %v", res, err)
	}
}

func TestStreamDropsInvalidAndOversizeLines(t *testing.T) {
	t.Parallel()
	pr, pw := io.Pipe()
	c := NewStreamConn(pr, io.Discard, 100, 64, nil, nil)
	got := make(chan string, 4)
	c.Listen(func(m *wire.Message) { got <- m.Method })
	go func() {
		pw.Write([]byte("not json\n" + `{"jsonrpc":"2.0","method":"a","method":"b"}` + "\n" +
			`{"jsonrpc":"2.0","method":"` + strings.Repeat("x", 200) + `"}` + "\n" +
			`{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}` + "\n"))
		pw.Close()
	}()
	select {
	case m := <-got:
		if m != "notifications/tools/list_changed" {
			t.Fatal(m)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("valid message not delivered")
	}
	<-c.Done()
	if n := c.Dropped.Load(); n != 3 {
		t.Fatalf("dropped %d, want 3", n)
	}
}

// TestStreamFailsACallWhoseAnswerIsUnreadable: an answer the strict parse
// refuses (here a case-variant key the gateway reads) fails its request at
// once, as an error answer, instead of leaving it to time out.
func TestStreamFailsACallWhoseAnswerIsUnreadable(t *testing.T) {
	t.Parallel()
	upR, upW := io.Pipe() // what the upstream writes
	reqR, reqW := io.Pipe()
	c := NewStreamConn(upR, reqW, 1<<20, 64, nil, nil)
	defer c.Close()
	go func() {
		// Answer the request the gateway writes with a message it
		// cannot read.
		line, _ := bufio.NewReader(reqR).ReadBytes('\n')
		m, _ := wire.Parse(bytes.TrimSpace(line), 64)
		upW.Write([]byte(`{"jsonrpc":"2.0","id":` + string(m.IDBytes()) + `,"result":{"content":[],"Content":[]}}` + "\n"))
	}()
	req, _ := wire.Parse([]byte(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"x"}}`), 64)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// (Waiting out the timeout would end in the context's error.)
	m, err := c.RoundTrip(ctx, req, nil)
	if err != nil || m.Kind != wire.ErrorReply || !strings.Contains(string(m.Bytes(m.Error)), "could not be read") {
		t.Fatalf("%v %v", m, err)
	}
}

// TestStreamWriteToAServerThatDoesNotReadEnds: a server process that never
// reads its input (stopped, hung) fails a call whose request does not fit
// in the pipe within the call's deadline, and its connection is closed (the
// process stopped) rather than holding the writer, and every later caller,
// for good. A caller queued behind the blocked write fails within its own
// deadline too.
func TestStreamWriteToAServerThatDoesNotReadEnds(t *testing.T) {
	t.Parallel()
	c, err := StartProcess(exec.Command("sleep", "600"), 1<<20, 64, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	big, _ := wire.Parse([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"a":"`+strings.Repeat("x", 1<<20)+`"}}}`), 64)
	small, _ := wire.Parse([]byte(`{"jsonrpc":"2.0","id":2,"method":"ping"}`), 64)
	errs := make(chan error, 2)
	for _, m := range []*wire.Message{big, small} {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			_, err := c.RoundTrip(ctx, m, nil)
			errs <- err
		}()
		time.Sleep(50 * time.Millisecond) // the big one writes first
	}
	for range 2 {
		select {
		case err := <-errs:
			if err == nil {
				t.Fatal("a call to a server that does not read succeeded")
			}
		case <-time.After(20 * time.Second):
			t.Fatal("a call blocked on writing to a server that does not read")
		}
	}
	select {
	case <-c.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("the connection to a server that does not read stayed open")
	}
	if err := c.Send(context.Background(), []byte(`{"jsonrpc":"2.0","method":"notifications/x"}`)); err == nil {
		t.Fatal("sent on a closed connection")
	}

	// A message sent without a deadline is bounded too (maxWriteWait,
	// shortened here).
	c2, err := StartProcess(exec.Command("sleep", "600"), 1<<20, 64, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	c2.maxWait = 300 * time.Millisecond
	sent := make(chan error, 1)
	go func() { sent <- c2.Send(context.Background(), big.Raw) }()
	select {
	case err := <-sent:
		if err == nil {
			t.Fatal("a message to a server that does not read was sent")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("a write without a deadline blocked on a server that does not read")
	}
	select {
	case <-c2.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("the connection to a server that does not read stayed open")
	}
}
