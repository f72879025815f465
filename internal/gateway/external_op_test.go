package gateway

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/modelcontextprotocol/go-sdk/oauthex"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/authn"
	"github.com/portcullis-dev/portcullis/internal/authserver"
	"github.com/portcullis-dev/portcullis/internal/reason"
	"github.com/portcullis-dev/portcullis/internal/store"
)

// The organisation's IdP as a real OpenID provider started by the test:
// zitadel/oidc's (the provider internal/authserver wraps), on its own
// listener, found by the gateway through discovery and JWKS like any
// external issuer. A token for an agent and a user is accepted, mapped
// and decided on; a token for another audience, of an issuer not trusted,
// expired or revoked is refused with the invalid_token challenge and an
// authn event.

// startOP runs an OpenID provider whose tokens are for resource.
func startOP(t *testing.T, resource string, ttl time.Duration) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	issuer := "http://" + srv.Listener.Addr().String()
	as, err := authserver.New(authserver.Options{
		Issuer: issuer, Resource: resource, Agents: []string{"reader"},
		Users:  map[string]authserver.User{"alice@example.com": {Password: "op-password-1"}},
		KeyDir: t.TempDir(), AccessTTL: ttl,
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	as.Routes(mux)
	srv.Config.Handler = mux
	srv.Start()
	t.Cleanup(srv.Close)
	return issuer
}

// opToken runs the authorization code flow with PKCE against the
// provider at issuer, as alice choosing agent reader.
func opToken(t *testing.T, issuer string) *oauth2.Token {
	t.Helper()
	cfg := &oauth2.Config{ClientID: register(t, issuer, "http://127.0.0.1:1/callback", "e2e-oauth"), RedirectURL: "http://127.0.0.1:1/callback", Scopes: []string{"mcp"},
		Endpoint: oauth2.Endpoint{AuthURL: issuer + "/oauth2/authorize", TokenURL: issuer + "/oauth2/token", AuthStyle: oauth2.AuthStyleInParams}}
	verifier := oauth2.GenerateVerifier()
	res, err := signIn(t, cfg.AuthCodeURL("st", oauth2.S256ChallengeOption(verifier)), "alice@example.com", "op-password-1", "reader")
	if err != nil {
		t.Fatal(err)
	}
	tok, err := cfg.Exchange(context.Background(), res.Code, oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestExternalIssuerIsARealOP(t *testing.T) {
	origin := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	resource := origin + "/mcp"
	idp := startOP(t, resource, time.Minute)
	elsewhere := startOP(t, "https://elsewhere.example/mcp", time.Minute) // trusted, for another resource
	short := startOP(t, resource, time.Second)                            // trusted, tokens of one second
	untrusted := startOP(t, resource, time.Minute)
	trust := func(iss string) string {
		return fmt.Sprintf("    - {issuer: %q, audience: %q, algorithms: [ES256], agent_claim: portcullis_agent}\n", iss, resource)
	}
	h := startGateway(t, atOrigin(origin, `[{name: reader, roles: [demo]}]`)+`auth:
  external:
`+trust(idp)+trust(elsewhere)+trust(short), map[string]string{"policy.cedar": demoPolicy})
	defer h.stop()
	const list = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}`

	tok := opToken(t, idp)
	if resp, body := h.post(tok.AccessToken, list, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("the IdP's token answered %d: %s", resp.StatusCode, body)
	}
	s, err := h.connect(tok.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	toolNames(t, s)
	if e := h.findEvent(func(e *audit.Event) bool { return e.Type == audit.TypeDecision && e.Agent == "reader" }); e == nil || e.User != "alice@example.com" {
		t.Fatalf("decision not attributed to the mapped agent and user: %+v", e)
	}

	refused := func(what, raw string) {
		t.Helper()
		resp, _ := h.post(raw, list, nil)
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
			t.Errorf("%s: %d %q", what, resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
	}
	refused("another audience", opToken(t, elsewhere).AccessToken)
	refused("an issuer not trusted", opToken(t, untrusted).AccessToken)
	expiring := opToken(t, short)
	time.Sleep(1500 * time.Millisecond)
	refused("expired", expiring.AccessToken)

	// Revoked: the credential is the grant (sid), so a revocation outlives
	// refreshes.
	var claims struct {
		SID string `json:"sid"`
	}
	payload, _ := base64.RawURLEncoding.DecodeString(strings.Split(tok.AccessToken, ".")[1])
	json.Unmarshal(payload, &claims)
	if err := cli(t, h.cfg).Revoke(t.Context(), store.RevokeToken, extCredential(idp, "sid:"+claims.SID), "ops", "lost laptop"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(authn.RevocationRefresh + 100*time.Millisecond)
	refused("revoked", tok.AccessToken)
	if n := len(filterEvents(h.events(), func(e *audit.Event) bool {
		return e.Type == audit.TypeAuthn && e.Code == reason.Unauthenticated
	})); n < 4 {
		t.Errorf("%d authn refusals audited, want at least 4", n)
	}
}

// atOrigin is the start of a gateway configuration whose public URL (and
// listener) is origin, with the given agents and the demo upstream.
func atOrigin(origin, agents string) string {
	return fmt.Sprintf(`version: 1
data_dir: DIR/data
listen: {public_url: %q}
policy: {paths: [DIR/policy.cedar]}
agents: %s
upstreams: [{name: demo, builtin: demo}]
`, origin, agents)
}

// register registers a public client with the authorization server at
// issuer (RFC 7591) and returns its ID.
func register(t *testing.T, issuer, redirect, name string) string {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"redirect_uris": []string{redirect}, "client_name": name})
	resp, err := http.Post(issuer+"/oauth2/register", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var reg struct {
		ClientID string `json:"client_id"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&reg); err != nil || reg.ClientID == "" {
		t.Fatalf("registration at %s: %d %v", issuer, resp.StatusCode, err)
	}
	return reg.ClientID
}

func filterEvents(all []*audit.Event, f func(*audit.Event) bool) []*audit.Event {
	var out []*audit.Event
	for _, e := range all {
		if f(e) {
			out = append(out, e)
		}
	}
	return out
}

// TestBuiltinAuthorizationServerFederation: the built-in authorization
// server signs people in through the organisation's IdP (a real OpenID
// provider started by the test): an MCP client's person goes to the IdP,
// comes back signed in, chooses the agent, and the client's token is for
// that person.
func TestBuiltinAuthorizationServerFederation(t *testing.T) {
	origin := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	idp := startOP(t, "https://ignored.example/mcp", time.Minute)
	clientID := register(t, idp, origin+"/oauth2/federated", "Portcullis")
	h := startGateway(t, atOrigin(origin, `[{name: reader, roles: [demo]}]`)+fmt.Sprintf(`auth:
  authorization_server:
    agents: [reader]
    federation: {issuer: %q, client_id: %q}
`, idp, clientID), map[string]string{"policy.cedar": demoPolicy})
	defer h.stop()

	browser := &http.Client{CheckRedirect: func(r *http.Request, via []*http.Request) error {
		if r.URL.Path == "/callback" {
			return http.ErrUseLastResponse
		}
		return nil
	}}
	form := func(page []byte) url.Values {
		csrf, id := csrfRE.FindSubmatch(page), idRE.FindSubmatch(page)
		if csrf == nil || id == nil {
			t.Fatalf("no form in %s", page)
		}
		return url.Values{"id": {string(id[1])}, "csrf": {string(csrf[1])}}
	}
	handler, err := auth.NewAuthorizationCodeHandler(&auth.AuthorizationCodeHandlerConfig{
		RedirectURL: "http://127.0.0.1:1/callback",
		DynamicClientRegistrationConfig: &auth.DynamicClientRegistrationConfig{Metadata: &oauthex.ClientRegistrationMetadata{
			RedirectURIs: []string{"http://127.0.0.1:1/callback"}, ClientName: "e2e-oauth", TokenEndpointAuthMethod: "none"}},
		AuthorizationCodeFetcher: func(ctx context.Context, args *auth.AuthorizationArgs) (*auth.AuthorizationResult, error) {
			resp, err := browser.Get(args.URL) // the gateway's sign-in page: a button to the IdP
			if err != nil {
				return nil, err
			}
			page, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if !strings.Contains(string(page), "Sign in with") || strings.Contains(string(page), `name="password"`) {
				t.Errorf("the sign-in page offers no federation, or a password: %s", page)
			}
			resp, err = browser.PostForm(origin+"/oauth2/federate", form(page)) // to the IdP's sign-in page
			if err != nil {
				return nil, err
			}
			page, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			f := form(page)
			f.Set("user", "alice@example.com")
			f.Set("password", "op-password-1")
			f.Set("agent", "reader")
			f.Set("decision", "allow")
			resp, err = browser.PostForm(idp+"/oauth2/login", f) // back at the gateway, signed in
			if err != nil {
				return nil, err
			}
			page, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			if !strings.Contains(string(page), "Signed in as <b>alice@example.com</b>") {
				return nil, fmt.Errorf("not signed in at the gateway: %d %s", resp.StatusCode, page)
			}
			f = form(page)
			f.Set("agent", "reader")
			f.Set("decision", "allow")
			resp, err = browser.PostForm(origin+"/oauth2/login", f)
			if err != nil {
				return nil, err
			}
			resp.Body.Close()
			loc, err := url.Parse(resp.Header.Get("Location"))
			if err != nil || loc.Query().Get("code") == "" {
				return nil, fmt.Errorf("consent answered %d %q", resp.StatusCode, resp.Header.Get("Location"))
			}
			return &auth.AuthorizationResult{Code: loc.Query().Get("code"), State: loc.Query().Get("state"), Iss: loc.Query().Get("iss")}, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := mcp.NewClient(&mcp.Implementation{Name: "e2e-oauth", Version: "1"}, nil).Connect(ctx,
		&mcp.StreamableClientTransport{Endpoint: origin + "/mcp", OAuthHandler: handler, MaxRetries: -1}, nil)
	if err != nil {
		t.Fatalf("connect through federated sign-in: %v", err)
	}
	defer s.Close()
	toolNames(t, s)
	if e := h.findEvent(func(e *audit.Event) bool { return e.Type == audit.TypeDecision && e.Agent == "reader" }); e == nil || e.User != "alice@example.com" {
		t.Fatalf("decision not attributed to the person the IdP signed in: %+v", e)
	}
	// A forged return from the IdP signs nobody in.
	if resp, err := http.Get(origin + "/oauth2/federated?code=x&state=forged"); err != nil || resp.StatusCode != http.StatusBadRequest {
		t.Errorf("a forged return answered %v %v", resp.StatusCode, err)
	}
}
