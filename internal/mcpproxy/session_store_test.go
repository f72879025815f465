package mcpproxy

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/portcullis-dev/portcullis/internal/identity"
	"github.com/portcullis-dev/portcullis/internal/reason"
	"github.com/portcullis-dev/portcullis/internal/store"
)

// failingStore is the real store with failures switched on at will (the
// database going away at a chosen moment).
type failingStore struct {
	*store.DB
	labels, reads atomic.Bool
	// hold, when set, makes the next label write wait for it to close
	// (after closing held).
	hold, held chan struct{}
}

var errStoreDown = errors.New("store down (test)")

func (f *failingStore) AddSessionLabels(ctx context.Context, id string, labels []string) error {
	if f.labels.Load() {
		return errStoreDown
	}
	if f.hold != nil {
		hold := f.hold
		f.hold = nil
		close(f.held)
		<-hold
	}
	return f.DB.AddSessionLabels(ctx, id, labels)
}

func (f *failingStore) Session(ctx context.Context, id string) (store.AgentSession, bool, error) {
	if f.reads.Load() {
		return store.AgentSession{}, false, errStoreDown
	}
	return f.DB.Session(ctx, id)
}

// agentHeader names the agent of a request (test authentication).
type agentHeader struct{}

func (agentHeader) Authenticate(r *http.Request) (*identity.Principal, error) {
	return &identity.Principal{Agent: r.Header.Get("X-Agent"), CredentialID: "cred"}, nil
}

type asAgent struct{ agent string }

func (a asAgent) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("X-Agent", a.agent)
	return http.DefaultTransport.RoundTrip(r)
}

// keptSessionRig is a proxy over one upstream whose results label the
// session untrusted, keeping sessions in a store whose failures the test
// switches on, with an HTTP front and one agent session through it.
func keptSessionRig(t *testing.T) (*rig, *failingStore, *httptest.Server, *mcp.ClientSession) {
	t.Helper()
	fs := &failingStore{}
	r := newRigWith(t, "", nil, map[string]*mcp.Server{"up": upstreamWith("read")}, func(o *Options, st *store.DB) {
		fs.DB = st
		o.Sessions = fs
		o.Labels = Labels{Upstreams: map[string][]string{"up": {LabelUntrustedInput}}}
	})
	srv := httptest.NewServer(r.p.HTTPHandler(agentHeader{}))
	t.Cleanup(srv.Close)
	s, err := mcp.NewClient(&mcp.Implementation{Name: "agent"}, nil).Connect(context.Background(), &mcp.StreamableClientTransport{
		Endpoint: srv.URL, HTTPClient: &http.Client{Transport: asAgent{"agent"}}, MaxRetries: -1, DisableStandaloneSSE: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return r, fs, srv, s
}

// A label that cannot be written to the store withholds the result that
// gave it and refuses the session until it is written; a session the
// gateway dropped is taken up from the store with its labels, and not
// while the store cannot be read.
func TestSessionLabelsAreKeptBeforeTheResult(t *testing.T) {
	t.Parallel()
	r, fs, srv, s := keptSessionRig(t)
	ctx := context.Background()
	kept, ok, err := fs.DB.Session(ctx, s.ID())
	if err != nil || !ok || kept.Agent != "agent" || kept.Version == "" {
		t.Fatalf("session not kept at initialize: %+v %v %v", kept, ok, err)
	}
	call := func() error {
		res, err := s.CallTool(ctx, &mcp.CallToolParams{Name: "up__read", Arguments: map[string]any{}})
		if err == nil && (res.IsError || !strings.Contains(res.Content[0].(*mcp.TextContent).Text, "read:")) {
			t.Fatalf("result: %+v", res.Content)
		}
		return err
	}

	fs.labels.Store(true)
	for i := range 2 { // the result withheld, then the session refused
		if err := call(); err == nil || !strings.Contains(err.Error(), string(reason.StoreUnavailable)) {
			t.Fatalf("call %d with the label unwritable: %v", i, err)
		}
	}
	fs.labels.Store(false)
	if err := call(); err != nil {
		t.Fatalf("call once the store is back: %v", err)
	}
	st, err := fs.DB.SessionState(ctx, s.ID())
	if err != nil || len(st.Labels) != 1 || st.Labels[0] != LabelUntrustedInput {
		t.Fatalf("labels kept: %+v %v", st, err)
	}

	// The gateway forgets the session (as a restart would).
	r.p.sessions.remove(r.p.sessions.get(s.ID()))
	fs.reads.Store(true)
	if err := call(); err == nil || !strings.Contains(err.Error(), "Service Unavailable") {
		t.Fatalf("take-up with the store unreadable: %v", err)
	}
	fs.reads.Store(false)
	if err := call(); err != nil {
		t.Fatalf("call in the session taken up: %v", err)
	}
	taken := r.p.sessions.get(s.ID())
	if taken == nil || !taken.isOpen() || !taken.prov.Blind() {
		t.Fatalf("session taken up: %+v", taken)
	}
	if got := taken.labels.list(); len(got) != 1 || got[0] != LabelUntrustedInput {
		t.Fatalf("labels of the session taken up: %v", got)
	}
	// Another agent with its ID: refused.
	req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader(`{"jsonrpc":"2.0","id":9,"method":"ping"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Session-Id", s.ID())
	req.Header.Set("X-Agent", "intruder")
	r.p.sessions.remove(taken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("another agent's take-up: %d", resp.StatusCode)
	}
}

// Two calls of one session read from the same labelled upstream: the
// second's result waits for the first's write of the label (the label is
// in the store before any result that gave it reaches the agent).
func TestConcurrentResultsWaitForTheLabelWrite(t *testing.T) {
	t.Parallel()
	_, fs, _, s := keptSessionRig(t)
	ctx := context.Background()
	release := make(chan struct{})
	fs.hold, fs.held = release, make(chan struct{})
	done := make(chan error, 2)
	call := func() {
		_, err := s.CallTool(ctx, &mcp.CallToolParams{Name: "up__read", Arguments: map[string]any{}})
		done <- err
	}
	go call()
	<-fs.held // the first call's write has begun
	go call()
	select {
	case err := <-done:
		t.Fatalf("a result reached the agent before its label was written: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}
