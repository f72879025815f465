package gateway

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/modelcontextprotocol/go-sdk/oauthex"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/reason"
)

// The built-in authorization server with a real OAuth client, the Go
// SDK's (as an MCP client that speaks OAuth connects with no header):
// 401, protected resource metadata, the server's metadata, dynamic
// registration, authorization code with PKCE through the sign-in and
// consent page (driven over HTTP, as a person's browser would), the token,
// and the call decided for the agent and user the person chose. A wrong
// password, a forged form and a tampered token are refused.

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
var idRE = regexp.MustCompile(`name="id" value="([^"]+)"`)

// signIn plays the person: it opens the authorization URL, fills the
// sign-in page and follows the redirect to the client's callback,
// returning the code and state (nothing listens at the callback).
func signIn(t *testing.T, authURL, user, password, agent string) (*auth.AuthorizationResult, error) {
	jar := &http.Client{CheckRedirect: func(r *http.Request, via []*http.Request) error {
		if r.URL.Path == "/callback" {
			return http.ErrUseLastResponse
		}
		return nil
	}}
	resp, err := jar.Get(authURL)
	if err != nil {
		return nil, err
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	csrf, id := csrfRE.FindSubmatch(page), idRE.FindSubmatch(page)
	if resp.StatusCode != http.StatusOK || csrf == nil || id == nil {
		return nil, fmt.Errorf("sign-in page: %d %s", resp.StatusCode, page)
	}
	if !strings.Contains(string(page), "e2e-oauth") || !strings.Contains(string(page), "reader") {
		t.Errorf("the consent page names neither the client nor the agents: %s", page)
	}
	form := url.Values{"id": {string(id[1])}, "csrf": {string(csrf[1])}, "user": {user}, "password": {password}, "agent": {agent}, "decision": {"allow"}}
	resp, err = jar.PostForm(resp.Request.URL.Scheme+"://"+resp.Request.URL.Host+"/oauth2/login", form)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		b, _ := io.ReadAll(resp.Body)
		return nil, fmt.Errorf("sign-in answered %d: %s", resp.StatusCode, b)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		return nil, err
	}
	if e := loc.Query().Get("error"); e != "" {
		return nil, fmt.Errorf("authorization refused: %s", e)
	}
	return &auth.AuthorizationResult{Code: loc.Query().Get("code"), State: loc.Query().Get("state"), Iss: loc.Query().Get("iss")}, nil
}

// TestBuiltinAuthorizationServerThrottlesPasswords: wrong passwords lock
// the person's sign-in for a while, across authorization requests.
func TestBuiltinAuthorizationServerThrottlesPasswords(t *testing.T) {
	t.Setenv("PORTCULLIS_TEST_ALICE", "s3cret-alice")
	origin := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	h := startGateway(t, atOrigin(origin, `[{name: reader}]`)+`auth:
  authorization_server:
    users: [{name: alice, password: {from_env: PORTCULLIS_TEST_ALICE}}]
    agents: [reader]
`, map[string]string{"policy.cedar": `permit (principal, action, resource);`})
	defer h.stop()
	clientID := register(t, origin, "http://127.0.0.1:1/callback", "guesser")
	authorize := func() string {
		q := url.Values{"response_type": {"code"}, "client_id": {clientID}, "redirect_uri": {"http://127.0.0.1:1/callback"},
			"code_challenge": {"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"}, "code_challenge_method": {"S256"}, "state": {"s"}, "scope": {"mcp"}}
		return origin + "/oauth2/authorize?" + q.Encode()
	}
	try := func(password string) int {
		jar := &http.Client{CheckRedirect: func(r *http.Request, via []*http.Request) error {
			if r.URL.Path == "/callback" {
				return http.ErrUseLastResponse
			}
			return nil
		}}
		resp, err := jar.Get(authorize())
		if err != nil {
			t.Fatal(err)
		}
		page, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		csrf, id := csrfRE.FindSubmatch(page), idRE.FindSubmatch(page)
		if csrf == nil || id == nil {
			t.Fatalf("sign-in page: %d %s", resp.StatusCode, page)
		}
		resp, err = jar.PostForm(origin+"/oauth2/login", url.Values{"id": {string(id[1])}, "csrf": {string(csrf[1])}, "user": {"alice"}, "password": {password}, "agent": {"reader"}, "decision": {"allow"}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for i := range 5 {
		if code := try(fmt.Sprint("guess-", i)); code != http.StatusUnauthorized {
			t.Fatalf("wrong password %d answered %d", i, code)
		}
	}
	if code := try("s3cret-alice"); code != http.StatusTooManyRequests {
		t.Errorf("the right password after five wrong ones answered %d, want 429 (throttled)", code)
	}
}

func TestBuiltinAuthorizationServer(t *testing.T) {
	t.Setenv("PORTCULLIS_TEST_ALICE", "s3cret-alice")
	origin := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	h := startGateway(t, atOrigin(origin, `[{name: reader, roles: [demo]}, {name: writer}]`)+`auth:
  authorization_server:
    users: [{name: alice, password: {from_env: PORTCULLIS_TEST_ALICE}}]
    agents: [reader]
    access_token_ttl: 2s
`, map[string]string{"policy.cedar": `permit (principal == Agent::"reader", action, resource);`})
	defer h.stop()
	_ = h

	var wrong bool
	handler, err := auth.NewAuthorizationCodeHandler(&auth.AuthorizationCodeHandlerConfig{
		RedirectURL: "http://127.0.0.1:1/callback",
		DynamicClientRegistrationConfig: &auth.DynamicClientRegistrationConfig{Metadata: &oauthex.ClientRegistrationMetadata{
			RedirectURIs: []string{"http://127.0.0.1:1/callback"}, ClientName: "e2e-oauth", GrantTypes: []string{"authorization_code", "refresh_token"},
			TokenEndpointAuthMethod: "none",
		}},
		RequestRefreshToken: true,
		AuthorizationCodeFetcher: func(ctx context.Context, args *auth.AuthorizationArgs) (*auth.AuthorizationResult, error) {
			if wrong {
				if _, err := signIn(t, args.URL, "alice", "guess", "reader"); err == nil {
					t.Error("a wrong password was accepted")
				}
			}
			return signIn(t, args.URL, "alice", "s3cret-alice", "reader")
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	wrong = true
	client := mcp.NewClient(&mcp.Implementation{Name: "e2e-oauth", Version: "1"}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: origin + "/mcp", OAuthHandler: handler, MaxRetries: -1}, nil)
	if err != nil {
		t.Fatalf("connect with OAuth: %v", err)
	}
	defer s.Close()
	if _, err := s.ListTools(ctx, nil); err != nil {
		t.Fatalf("list tools: %v", err)
	}
	e := h.findEvent(func(e *audit.Event) bool { return e.Type == audit.TypeDecision && e.Agent == "reader" })
	if e == nil || e.User != "alice" {
		t.Fatalf("decision not attributed to the agent and person chosen at consent: %+v", e)
	}
	for _, code := range []reason.Code{reason.ClientRegistered, reason.SignInRefused, reason.AuthorizationConsented} {
		if h.findEvent(func(e *audit.Event) bool { return e.Type == audit.TypeIdentity && e.Code == code }) == nil {
			t.Errorf("no %s event", code)
		}
	}

	// The token is refused once tampered with, and the consent form once
	// forged.
	ts, _ := handler.TokenSource(ctx)
	tok, err := ts.Token()
	if err != nil {
		t.Fatal(err)
	}
	if tok.RefreshToken == "" {
		t.Fatal("no refresh token issued")
	}
	// Access tokens live 2 s here (the client renews them ahead of
	// expiry): the session keeps working on refreshed tokens, each refresh
	// rotates the refresh token, and an expired access token is refused.
	time.Sleep(2100 * time.Millisecond)
	if _, err := s.ListTools(ctx, nil); err != nil {
		t.Fatalf("after the first access token expired: %v", err)
	}
	tok2, err := ts.Token()
	if err != nil || tok2.AccessToken == tok.AccessToken || tok2.RefreshToken == tok.RefreshToken {
		t.Fatalf("not refreshed and rotated: %v", err)
	}
	if resp, _ := h.post(tok.AccessToken, `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("an expired access token answered %d", resp.StatusCode)
	}
	var claims struct {
		ClientID string `json:"client_id"`
		Agent    string `json:"portcullis_agent"`
		Scope    string `json:"scope"`
		SID      string `json:"sid"`
		Aud      any    `json:"aud"`
	}
	payload, _ := base64.RawURLEncoding.DecodeString(strings.Split(tok.AccessToken, ".")[1])
	if err := json.Unmarshal(payload, &claims); err != nil || claims.ClientID == "" || claims.Agent != "reader" || !strings.Contains(claims.Scope, "mcp") || claims.SID == "" {
		t.Fatalf("access token claims %s: %v", payload, err)
	}
	resp, err := http.PostForm(origin+"/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}, "client_id": {claims.ClientID}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("a used refresh token answered %d", resp.StatusCode)
	}
	// Presenting a rotated refresh token again revokes its whole grant:
	// the live refresh token dies too.
	resp, err = http.PostForm(origin+"/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok2.RefreshToken}, "client_id": {claims.ClientID}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		t.Error("the grant survived the replay of a rotated refresh token")
	}
	// The provider's callback, which would give a code to whoever knows a
	// request ID, is not served.
	if resp, err := http.Get(origin + "/oauth2/authorize/callback?id=x"); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("the provider's callback is served: %v %v", resp.StatusCode, err)
	}
	parts := strings.Split(tok.AccessToken, ".")
	forged := parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2]))
	resp, _ = h.post(forged, `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, nil)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("a forged signature answered %d", resp.StatusCode)
	}
	resp, err = http.PostForm(origin+"/oauth2/login", url.Values{"id": {"x"}, "csrf": {"y"}, "user": {"alice"}, "password": {"s3cret-alice"}, "agent": {"reader"}, "decision": {"allow"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("a forged consent answered %d", resp.StatusCode)
	}
	// Registration refuses what is not a public client with safe redirects.
	for _, body := range []string{`{"redirect_uris":["http://evil.example.com/cb"]}`, `{"redirect_uris":["https://x/cb"],"token_endpoint_auth_method":"client_secret_basic"}`, `{"redirect_uris":[]}`, `not json`} {
		resp, err := http.Post(origin+"/oauth2/register", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("registration %s answered %d", body, resp.StatusCode)
		}
	}
}
