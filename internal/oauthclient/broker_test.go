package oauthclient

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/oauth2"

	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/reason"
	"github.com/portcullis-dev/portcullis/internal/secret"
	"github.com/portcullis-dev/portcullis/internal/store"
	"github.com/portcullis-dev/portcullis/internal/transport"
)

func vault(t *testing.T) *secret.Vault {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "store.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	v, err := secret.Open(filepath.Join(dir, "keys"), st)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

type events struct {
	mu  sync.Mutex
	all []Event
}

func (e *events) add(ev Event) { e.mu.Lock(); e.all = append(e.all, ev); e.mu.Unlock() }

func (e *events) codes() []reason.Code {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []reason.Code
	for _, ev := range e.all {
		out = append(out, ev.Code)
	}
	return out
}

// challenge is a protected resource's 401 naming metadata that says its
// authorization server is as.
func challenge(t *testing.T, as string) (*http.Request, *http.Response, string) {
	t.Helper()
	mux := http.NewServeMux()
	rs := httptest.NewServer(mux)
	t.Cleanup(rs.Close)
	mux.HandleFunc("/.well-known/oauth-protected-resource/mcp", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"resource":"`+rs.URL+`/mcp","authorization_servers":["`+as+`"]}`)
	})
	req := httptest.NewRequest(http.MethodPost, rs.URL+"/mcp", nil)
	resp := &http.Response{StatusCode: http.StatusUnauthorized, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(""))}
	resp.Header.Set("WWW-Authenticate", `Bearer resource_metadata="`+rs.URL+`/.well-known/oauth-protected-resource/mcp"`)
	return req, resp, rs.URL
}

// authServer answers metadata, registration and token requests; its
// token endpoint refuses when refuse is set.
func authServer(t *testing.T, refuse bool) *httptest.Server {
	t.Helper()
	var as *httptest.Server
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/oauth-authorization-server", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"issuer":"`+as.URL+`","authorization_endpoint":"`+as.URL+`/authorize","token_endpoint":"`+as.URL+`/token","registration_endpoint":"`+as.URL+`/register","code_challenge_methods_supported":["S256"]}`)
	})
	mux.HandleFunc("/register", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"client_id":"c1","token_endpoint_auth_method":"none"}`)
	})
	mux.HandleFunc("/token", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if refuse {
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"error":"invalid_grant"}`)
			return
		}
		io.WriteString(w, `{"access_token":"at-1","token_type":"Bearer","expires_in":3600,"refresh_token":"rt-1"}`)
	})
	as = httptest.NewServer(mux)
	t.Cleanup(as.Close)
	return as
}

// callback serves r as the gateway routes the callback.
func callback(b *Broker, r *http.Request) *httptest.ResponseRecorder {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+CallbackPath+"/{upstream}", b.ServeCallback)
	w := httptest.NewRecorder()
	mux.ServeHTTP(w, r)
	return w
}

func TestFlowCallbackAndRestore(t *testing.T) {
	as := authServer(t, false)
	v := vault(t)
	var ev events
	var done []Authorized
	var mu sync.Mutex
	b := New(Options{PublicURL: func() string { return "http://127.0.0.1:1" }, Vault: v, Event: ev.add, Authorized: func(a Authorized) {
		mu.Lock()
		done = append(done, a)
		mu.Unlock()
	}})
	cfg := &config.UpstreamOAuth{}
	g, err := b.Grant("docs", &config.HTTPServer{URL: "http://127.0.0.1:9/mcp", OAuth: cfg}, "k", "ignored: not per user")
	if err != nil {
		t.Fatal(err)
	}
	req, resp, _ := challenge(t, as.URL)
	err = g.Authorize(context.Background(), req, resp)
	var ar *transport.AuthorizationRequired
	if !errors.As(err, &ar) || ar.PerUser || ar.User != "" || !strings.HasPrefix(ar.URL, as.URL+"/authorize?") {
		t.Fatalf("want the operator's authorization required, got %v", err)
	}
	// A second request joins the flow waiting.
	req2, resp2, _ := challenge(t, as.URL)
	if err := g.Authorize(context.Background(), req2, resp2); !errors.As(err, &ar) || ar.ID == "" {
		t.Fatalf("second request: %v", err)
	}
	if p := b.Pending(false); len(p) != 1 || p[0].Upstream != "docs" {
		t.Fatalf("pending %+v", p)
	}

	// A callback with an unknown state changes nothing.
	w := callback(b, httptest.NewRequest(http.MethodGet, CallbackPath+"/docs?code=x&state=forged", nil))
	if w.Code != http.StatusBadRequest || len(b.Pending(false)) != 1 {
		t.Fatalf("forged callback: %d, pending %d", w.Code, len(b.Pending(false)))
	}
	// The person comes back with the code.
	state := b.Pending(false)[0].URL
	state = state[strings.Index(state, "state=")+6:]
	if i := strings.IndexByte(state, '&'); i >= 0 {
		state = state[:i]
	}
	// At another upstream's callback the state is refused and stays.
	w = callback(b, httptest.NewRequest(http.MethodGet, CallbackPath+"/other?code=good&state="+state, nil))
	if w.Code != http.StatusBadRequest || len(b.Pending(false)) != 1 {
		t.Fatalf("callback at another upstream: %d, pending %d", w.Code, len(b.Pending(false)))
	}
	w = callback(b, httptest.NewRequest(http.MethodGet, CallbackPath+"/docs?code=good&state="+state, nil))
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "Authorized") {
		t.Fatalf("callback: %d %s", w.Code, w.Body)
	}
	if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("callback page CSP %q", csp)
	}
	ts, _ := g.TokenSource(context.Background())
	if tok, err := ts.Token(); err != nil || tok.AccessToken != "at-1" {
		t.Fatalf("token after authorization: %v %v", tok, err)
	}
	mu.Lock()
	if len(done) != 1 || done[0].Upstream != "docs" {
		t.Errorf("authorized callbacks %+v", done)
	}
	mu.Unlock()
	if got := ev.codes(); len(got) != 2 || got[0] != reason.UpstreamAuthorizationRequested || got[1] != reason.UpstreamAuthorized {
		t.Errorf("events %v", got)
	}

	// A new broker (a restarted gateway) finds the sealed token.
	b2 := New(Options{PublicURL: func() string { return "http://127.0.0.1:1" }, Vault: v})
	g2, err := b2.Grant("docs", &config.HTTPServer{URL: "http://127.0.0.1:9/mcp", OAuth: cfg}, "", "")
	if err != nil {
		t.Fatal(err)
	}
	ts2, _ := g2.TokenSource(context.Background())
	if ts2 == nil {
		t.Fatal("no token restored from the vault")
	}
	if tok, err := ts2.Token(); err != nil || tok.AccessToken != "at-1" || tok.RefreshToken != "rt-1" {
		t.Fatalf("restored token %+v %v", tok, err)
	}
	// The upstream moved: its old token is not sent to the new URL.
	b3 := New(Options{PublicURL: func() string { return "http://127.0.0.1:1" }, Vault: v})
	g3, err := b3.Grant("docs", &config.HTTPServer{URL: "http://127.0.0.1:10/mcp", OAuth: cfg}, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if ts3, _ := g3.TokenSource(context.Background()); ts3 != nil {
		t.Fatal("a token sealed for another upstream URL was restored")
	}
}

func TestUsersFlowStartsOnlyFromACall(t *testing.T) {
	as := authServer(t, false)
	var ev events
	b := New(Options{PublicURL: func() string { return "http://127.0.0.1:1" }, Vault: vault(t), Event: ev.add})
	g, _ := b.Grant("docs", &config.HTTPServer{URL: "http://127.0.0.1:9/mcp", OAuth: &config.UpstreamOAuth{PerUser: true}}, "portcullis\x00alice", "alice")
	req, resp, _ := challenge(t, as.URL)
	var ar *transport.AuthorizationRequired
	if err := g.Authorize(context.Background(), req, resp); !errors.As(err, &ar) || ar.URL != "" || !ar.PerUser {
		t.Fatalf("a listing started the user's authorization: %v", err)
	}
	if len(ev.codes()) != 0 || len(b.Pending(true)) != 0 {
		t.Fatalf("events %v, pending %v", ev.codes(), b.Pending(true))
	}
	req, resp, _ = challenge(t, as.URL)
	if err := g.Authorize(transport.WithPrompt(context.Background()), req, resp); !errors.As(err, &ar) || ar.URL == "" || ar.User != "alice" {
		t.Fatalf("a call did not ask the user: %v", err)
	}
	if p := b.Pending(false); len(p) != 0 {
		t.Errorf("a user's URL listed for operators: %+v", p)
	}
	if !errors.Is(ar, transport.ErrAuthorization) {
		t.Error("AuthorizationRequired is not an ErrAuthorization")
	}
}

func TestFailedFlowIsAuditedAndNotRetriedAtOnce(t *testing.T) {
	as := authServer(t, true)
	var ev events
	b := New(Options{PublicURL: func() string { return "http://127.0.0.1:1" }, Vault: vault(t), Event: ev.add})
	g, _ := b.Grant("docs", &config.HTTPServer{URL: "http://127.0.0.1:9/mcp", OAuth: &config.UpstreamOAuth{}}, "", "")
	req, resp, _ := challenge(t, as.URL)
	var ar *transport.AuthorizationRequired
	if err := g.Authorize(context.Background(), req, resp); !errors.As(err, &ar) {
		t.Fatal(err)
	}
	state := ar.URL[strings.Index(ar.URL, "state=")+6:]
	if i := strings.IndexByte(state, '&'); i >= 0 {
		state = state[:i]
	}
	w := callback(b, httptest.NewRequest(http.MethodGet, CallbackPath+"/docs?error=access_denied&error_description=%3Cscript%3E&state="+state, nil))
	if w.Code != http.StatusBadGateway || strings.Contains(w.Body.String(), "<script>") {
		t.Fatalf("refused authorization page: %d %s", w.Code, w.Body)
	}
	got := ev.codes()
	if len(got) != 2 || got[1] != reason.UpstreamAuthorizationFailed {
		t.Fatalf("events %v", got)
	}
	// The next request gets the failure without a new flow or event.
	req, resp, _ = challenge(t, as.URL)
	if err := g.Authorize(context.Background(), req, resp); err == nil || errors.As(err, &ar) {
		t.Fatalf("right after a failure: %v", err)
	}
	if len(ev.codes()) != 2 {
		t.Errorf("events after the cached failure: %v", ev.codes())
	}
}

func TestClientCredentials(t *testing.T) {
	var gotAuth string
	var as *httptest.Server
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/oauth-authorization-server", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"issuer":"`+as.URL+`","token_endpoint":"`+as.URL+`/token","token_endpoint_auth_methods_supported":["client_secret_basic"],"code_challenge_methods_supported":["S256"]}`)
	})
	mux.HandleFunc("/token", func(w http.ResponseWriter, r *http.Request) {
		gotAuth = r.Header.Get("Authorization")
		r.ParseForm()
		w.Header().Set("Content-Type", "application/json")
		if r.Form.Get("grant_type") != "client_credentials" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		io.WriteString(w, `{"access_token":"machine","token_type":"Bearer","expires_in":3600}`)
	})
	as = httptest.NewServer(mux)
	defer as.Close()
	var ev events
	b := New(Options{Event: ev.add, Resolve: func(v config.Value) (string, error) { return v.Value, nil }})
	g, err := b.Grant("ci", &config.HTTPServer{URL: "http://127.0.0.1:9/mcp", OAuth: &config.UpstreamOAuth{Grant: config.GrantClientCredentials, ClientID: "gw", ClientSecret: &config.Value{Value: "s3cret"}, Issuer: as.URL}}, "alice", "alice")
	if err != nil {
		t.Fatal(err)
	}
	req, resp, _ := challenge(t, as.URL)
	if err := g.Authorize(context.Background(), req, resp); err != nil {
		t.Fatal(err)
	}
	ts, _ := g.TokenSource(context.Background())
	if tok, err := ts.Token(); err != nil || tok.AccessToken != "machine" {
		t.Fatalf("%v %v", tok, err)
	}
	if !strings.HasPrefix(gotAuth, "Basic ") {
		t.Errorf("token endpoint auth %q", gotAuth)
	}
	if got := ev.codes(); len(got) != 1 || got[0] != reason.UpstreamAuthorized {
		t.Errorf("events %v", got)
	}
}

func TestPrivateAddressesRefused(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler()) // on 127.0.0.1
	defer srv.Close()
	if _, err := guardedClient(false).Get(srv.URL); err == nil || !strings.Contains(err.Error(), "private address") {
		t.Errorf("loopback reached from a public upstream's grant: %v", err)
	}
	resp, err := guardedClient(true).Get(srv.URL)
	if err != nil {
		t.Fatalf("loopback refused for an upstream on loopback: %v", err)
	}
	resp.Body.Close()
	for _, u := range []string{"https://169.254.169.254/latest/meta-data", "https://[fe80::1]/x", "https://0.0.0.0/x"} {
		if _, err := guardedClient(true).Get(u); err == nil || !strings.Contains(err.Error(), "not a destination") {
			t.Errorf("%s: %v", u, err)
		}
	}
}

func TestOnlySecureURLs(t *testing.T) {
	c := guardedClient(false)
	for _, u := range []string{"http://example.com/.well-known/oauth-authorization-server", "file:///etc/passwd", "gopher://x"} {
		if _, err := c.Get(u); err == nil || !strings.Contains(err.Error(), "https") {
			t.Errorf("%s: %v", u, err)
		}
	}
	// Redirects are not followed.
	srv := httptest.NewServer(http.RedirectHandler("http://169.254.169.254/", http.StatusFound))
	defer srv.Close()
	resp, err := guardedClient(true).Get(srv.URL)
	if err != nil || resp.StatusCode != http.StatusFound {
		t.Fatalf("redirect: %v %v", resp, err)
	}
	resp.Body.Close()
}

func TestGrantNeedsPublicURLForCodes(t *testing.T) {
	b := New(Options{})
	if _, err := b.Grant("x", &config.HTTPServer{URL: "https://x/mcp", OAuth: &config.UpstreamOAuth{}}, "", ""); err == nil || !strings.Contains(err.Error(), "public_url") {
		t.Fatalf("got %v", err)
	}
}

var _ oauth2.TokenSource = (*savingSource)(nil)
