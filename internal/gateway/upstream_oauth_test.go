package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/modelcontextprotocol/go-sdk/oauthex"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/reason"
	"github.com/portcullis-dev/portcullis/internal/token"
)

// An upstream that speaks MCP authorization behind the gateway, with
// per-user authorization: the gateway is the OAuth client (discovery,
// dynamic registration, authorization code with PKCE and the resource
// indicator, sealed tokens); each user authorizes once, through a URL
// elicitation their agent's client receives; the upstream sees each
// user's own token and never an agent's. The authorization server here is
// a small test double (the conformance suite's client scenarios exercise
// real third-party ones: cmd/portcullis TestConformanceAuthClient).

// testAS is an authorization server that approves at once as whoever is
// "logged in" in the test's browser.
type testAS struct {
	srv *httptest.Server

	mu       sync.Mutex
	login    string               // the person the browser is signed in as
	codes    map[string]codeGrant // issued, unused
	tokens   map[string]string    // access token -> user
	clients  map[string]bool      // registered client IDs
	resource map[string]string    // access token -> resource it is for
	refresh  map[string]codeGrant // refresh token -> grant
	seen     []string             // what happened, for assertions
}

type codeGrant struct {
	user, client, challenge, redirect, resource string
}

func newTestAS(t *testing.T) *testAS {
	as := &testAS{codes: map[string]codeGrant{}, tokens: map[string]string{}, clients: map[string]bool{}, resource: map[string]string{}, refresh: map[string]codeGrant{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/oauth-authorization-server", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"issuer": as.srv.URL, "authorization_endpoint": as.srv.URL + "/authorize", "token_endpoint": as.srv.URL + "/token",
			"registration_endpoint": as.srv.URL + "/register", "code_challenge_methods_supported": []string{"S256"},
			"response_types_supported": []string{"code"}, "token_endpoint_auth_methods_supported": []string{"none"},
		})
	})
	mux.HandleFunc("POST /register", func(w http.ResponseWriter, r *http.Request) {
		var m oauthex.ClientRegistrationMetadata
		json.NewDecoder(r.Body).Decode(&m)
		as.mu.Lock()
		id := fmt.Sprintf("client-%d", len(as.clients)+1)
		as.clients[id] = true
		as.seen = append(as.seen, "register "+strings.Join(m.RedirectURIs, ","))
		as.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		json.NewEncoder(w).Encode(map[string]any{"client_id": id, "redirect_uris": m.RedirectURIs, "token_endpoint_auth_method": "none"})
	})
	mux.HandleFunc("GET /authorize", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		as.mu.Lock()
		defer as.mu.Unlock()
		if !as.clients[q.Get("client_id")] || q.Get("code_challenge_method") != "S256" || q.Get("resource") == "" {
			http.Error(w, "bad authorization request", http.StatusBadRequest)
			return
		}
		code := fmt.Sprintf("code-%d", len(as.seen))
		as.codes[code] = codeGrant{user: as.login, client: q.Get("client_id"), challenge: q.Get("code_challenge"), redirect: q.Get("redirect_uri"), resource: q.Get("resource")}
		as.seen = append(as.seen, "authorize "+as.login)
		http.Redirect(w, r, q.Get("redirect_uri")+"?code="+code+"&state="+url.QueryEscape(q.Get("state")), http.StatusFound)
	})
	mux.HandleFunc("POST /token", func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		as.mu.Lock()
		defer as.mu.Unlock()
		var g codeGrant
		w.Header().Set("Content-Type", "application/json")
		switch r.Form.Get("grant_type") {
		case "authorization_code":
			c, ok := as.codes[r.Form.Get("code")]
			delete(as.codes, r.Form.Get("code"))
			sum := sha256.Sum256([]byte(r.Form.Get("code_verifier")))
			if !ok || c.client != r.Form.Get("client_id") || c.redirect != r.Form.Get("redirect_uri") ||
				base64.RawURLEncoding.EncodeToString(sum[:]) != c.challenge || c.resource != r.Form.Get("resource") {
				w.WriteHeader(http.StatusBadRequest)
				json.NewEncoder(w).Encode(map[string]string{"error": "invalid_grant"})
				return
			}
			g = c
		case "refresh_token":
			c, ok := as.refresh[r.Form.Get("refresh_token")]
			if !ok {
				w.WriteHeader(http.StatusBadRequest)
				json.NewEncoder(w).Encode(map[string]string{"error": "invalid_grant"})
				return
			}
			g = c
		}
		n := len(as.tokens) + 1
		at, rt := fmt.Sprintf("at-%s-%d", g.user, n), fmt.Sprintf("rt-%s-%d", g.user, n)
		as.tokens[at], as.resource[at], as.refresh[rt] = g.user, g.resource, g
		as.seen = append(as.seen, "token "+g.user)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"access_token": at, "token_type": "Bearer", "expires_in": 3600, "refresh_token": rt})
	})
	as.srv = httptest.NewServer(mux)
	t.Cleanup(as.srv.Close)
	return as
}

func (as *testAS) signIn(user string) {
	as.mu.Lock()
	as.login = user
	as.mu.Unlock()
}

// verify is the protected upstream's token check: a token this server
// issued for this resource.
func (as *testAS) verify(resource string) auth.TokenVerifier {
	return func(_ context.Context, tok string, _ *http.Request) (*auth.TokenInfo, error) {
		as.mu.Lock()
		defer as.mu.Unlock()
		user, ok := as.tokens[tok]
		if !ok || as.resource[tok] != resource {
			return nil, auth.ErrInvalidToken
		}
		return &auth.TokenInfo{UserID: user, Expiration: time.Now().Add(time.Hour)}, nil
	}
}

// protectedUpstream is an MCP server (the Go SDK's) that needs a token
// from as, with a tool saying whose token it got; seen collects every
// Authorization header it received.
func protectedUpstream(t *testing.T, as *testAS, seen *[]string, mu *sync.Mutex) string {
	srv := mcp.NewServer(&mcp.Implementation{Name: "protected"}, nil)
	mcp.AddTool(srv, &mcp.Tool{Name: "whoami"}, func(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: req.Extra.TokenInfo.UserID}}}, nil, nil
	})
	mux := http.NewServeMux()
	ts := httptest.NewServer(mux)
	t.Cleanup(ts.Close)
	resource := ts.URL + "/mcp"
	mux.Handle("/.well-known/oauth-protected-resource/mcp", auth.ProtectedResourceMetadataHandler(&oauthex.ProtectedResourceMetadata{
		Resource: resource, AuthorizationServers: []string{as.srv.URL},
	}))
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, nil)
	protected := auth.RequireBearerToken(as.verify(resource), &auth.RequireBearerTokenOptions{
		ResourceMetadataURL: ts.URL + "/.well-known/oauth-protected-resource/mcp",
	})(h)
	mux.Handle("/mcp", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a := r.Header.Get("Authorization"); a != "" {
			mu.Lock()
			*seen = append(*seen, a)
			mu.Unlock()
		}
		protected.ServeHTTP(w, r)
	}))
	return resource
}

// openInBrowser follows an authorization URL to the gateway's callback and
// returns the page it ends on.
func openInBrowser(t *testing.T, u string) (int, string) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// elicitedURL is the URL of a call's URL elicitation error.
func elicitedURL(t *testing.T, err error) string {
	t.Helper()
	var rpc *jsonrpc.Error
	if !errors.As(err, &rpc) || rpc.Code != mcp.CodeURLElicitationRequired {
		t.Fatalf("want a URL elicitation (-32042), got %v", err)
	}
	var data struct {
		Reason       string `json:"reason"`
		Elicitations []struct{ Mode, URL, ElicitationID string }
	}
	if err := json.Unmarshal(rpc.Data, &data); err != nil || len(data.Elicitations) != 1 || data.Elicitations[0].Mode != "url" {
		t.Fatalf("elicitation data %s: %v", rpc.Data, err)
	}
	if data.Reason != string(reason.UpstreamAuthorizationRequired) {
		t.Errorf("reason %q", data.Reason)
	}
	return data.Elicitations[0].URL
}

func TestUpstreamOAuthPerUser(t *testing.T) {
	as := newTestAS(t)
	var seen []string
	var seenMu sync.Mutex
	up := protectedUpstream(t, as, &seen, &seenMu)
	h := startGateway(t, fmt.Sprintf(`version: 1
data_dir: DIR/data
policy: {paths: [DIR/allow.cedar]}
agents: [{name: reader}]
upstreams:
  - name: files
    isolation: user
    http: {url: %q, oauth: {per_user: true}}
`, up), map[string]string{"allow.cedar": `permit (principal, action, resource);`})
	defer h.stop()

	// The probe lists tools with the operator's authorization, asked for
	// in the log and the admin API, never of an agent.
	var pending []string
	for i := 0; i < 100 && len(pending) == 0; i++ {
		for _, p := range h.g.oauth.Pending(false) {
			pending = append(pending, p.URL)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(pending) != 1 {
		t.Fatalf("pending operator authorizations: %v", pending)
	}
	as.signIn("operator")
	if code, page := openInBrowser(t, pending[0]); code != http.StatusOK || !strings.Contains(page, "Authorized") {
		t.Fatalf("callback: %d %s", code, page)
	}
	// A callback is single use.
	if code, _ := openInBrowser(t, h.g.publicOrigin()+"/oauth/callback/files?code=x&state="+url.QueryEscape(stateOf(t, pending[0]))); code != http.StatusBadRequest {
		t.Errorf("replayed callback answered %d", code)
	}

	alice, _ := h.taskSession(token.Task{ID: "t-alice", Agent: "reader", User: "alice", Tools: []string{"files__whoami"}, Budget: 10})
	bob, _ := h.taskSession(token.Task{ID: "t-bob", Agent: "reader", User: "bob", Tools: []string{"files__whoami"}, Budget: 10})
	waitTools(t, alice, "files__whoami")
	ctx := context.Background()
	call := func(s *mcp.ClientSession) (string, error) {
		res, err := s.CallTool(ctx, &mcp.CallToolParams{Name: "files__whoami"})
		if err != nil {
			return "", err
		}
		return text(res), nil
	}

	// Alice has not authorized: her client is asked to open a URL.
	_, err := call(alice)
	aliceURL := elicitedURL(t, err)
	as.signIn("alice")
	if code, page := openInBrowser(t, aliceURL); code != http.StatusOK || !strings.Contains(page, "for alice") {
		t.Fatalf("alice's callback: %d %s", code, page)
	}
	if who, err := call(alice); err != nil || who != "alice" {
		t.Fatalf("alice's call after authorizing: %q %v", who, err)
	}
	// A session acting for nobody gets nothing from a per-user upstream,
	// and takes it down for nobody: a new session of Alice's still works.
	nobody, err := h.connect(h.token("reader", time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := call(nobody); err == nil {
			t.Fatal("a session without a user called a per-user upstream")
		}
	}
	alice2, _ := h.taskSession(token.Task{ID: "t-alice-2", Agent: "reader", User: "alice", Tools: []string{"files__whoami"}, Budget: 10})
	if who, err := call(alice2); err != nil || who != "alice" {
		t.Fatalf("alice's new session after the user-less one: %q %v", who, err)
	}
	// Bob's sessions do not ride on Alice's token.
	_, err = call(bob)
	if bobURL := elicitedURL(t, err); bobURL == aliceURL {
		t.Fatal("bob was given alice's authorization")
	}

	// Each grant's token is sealed in the vault; nothing of it is in the
	// audit log, which records who authorized what.
	names, _ := h.g.vault.Names(ctx)
	var sealed int
	for _, n := range names {
		if strings.HasPrefix(n, "oauth.files.") {
			sealed++
		}
	}
	if sealed != 2 {
		t.Errorf("sealed grants %v, want the operator's and alice's", names)
	}
	if e := h.findEvent(func(e *audit.Event) bool {
		return e.Type == audit.TypeUpstreamAuth && e.Code == reason.UpstreamAuthorized && e.User == "alice"
	}); e == nil {
		t.Error("no upstream_authorized event for alice")
	}
	if e := h.findEvent(func(e *audit.Event) bool {
		return e.Type == audit.TypeUpstreamAuth && e.Code == reason.UpstreamAuthorizationRequested && e.User == "bob"
	}); e == nil || strings.Contains(e.Detail, "state=") {
		t.Errorf("bob's request event %+v (the URL's state must not be audited)", e)
	}
	for _, e := range h.events() {
		if b, _ := json.Marshal(e); strings.Contains(string(b), "at-alice") || strings.Contains(string(b), "rt-alice") {
			t.Fatalf("a token reached the audit log: %s", b)
		}
	}
	// The upstream saw the gateway's tokens from its authorization server,
	// never an agent's credential.
	seenMu.Lock()
	defer seenMu.Unlock()
	if len(seen) == 0 {
		t.Fatal("the upstream saw no token")
	}
	for _, a := range seen {
		if !strings.HasPrefix(a, "Bearer at-") {
			t.Errorf("the upstream received %q, not a token of its authorization server", a)
		}
	}
}

func stateOf(t *testing.T, u string) string {
	t.Helper()
	p, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	return p.Query().Get("state")
}

// waitTools waits until s lists name (the probe relists once authorized).
func waitTools(t *testing.T, s *mcp.ClientSession, name string) {
	t.Helper()
	for i := 0; i < 100; i++ {
		res, err := s.ListTools(context.Background(), nil)
		if err == nil {
			for _, tool := range res.Tools {
				if tool.Name == name {
					return
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s never listed", name)
}
