package authserver

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/oauth2"
)

var (
	csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
	idRE   = regexp.MustCompile(`name="id" value="([^"]+)"`)
)

// serve runs a server (its issuer the test listener) with one user.
func serve(t *testing.T, metadata *http.Client) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	issuer := "http://" + srv.Listener.Addr().String()
	s, err := New(Options{Issuer: issuer, Resource: issuer + "/mcp", Agents: []string{"reader"},
		Users: map[string]User{"alice": {Password: "alice-password"}}, KeyDir: t.TempDir(), MetadataClient: metadata})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	s.Routes(mux)
	srv.Config.Handler = mux
	srv.Start()
	t.Cleanup(srv.Close)
	return issuer
}

// TestClientIDMetadataDocument: a client named by the https URL of its
// metadata document gets a code and a token without registering; a
// document that names another client ID is refused.
func TestClientIDMetadataDocument(t *testing.T) {
	docs := http.NewServeMux()
	host := httptest.NewTLSServer(docs)
	defer host.Close()
	clientID := host.URL + "/client.json"
	docs.HandleFunc("/client.json", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{"client_id": clientID, "client_name": "Doc Client",
			"redirect_uris": []string{"http://127.0.0.1:1/callback"}, "token_endpoint_auth_method": "none"})
	})
	docs.HandleFunc("/liar.json", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{"client_id": "https://trusted.example/client.json", "redirect_uris": []string{"http://127.0.0.1:1/callback"}})
	})
	issuer := serve(t, host.Client())

	resp, err := http.Get(issuer + "/.well-known/oauth-authorization-server")
	if err != nil {
		t.Fatal(err)
	}
	var meta map[string]any
	json.NewDecoder(resp.Body).Decode(&meta)
	resp.Body.Close()
	if meta["client_id_metadata_document_supported"] != true {
		t.Fatalf("metadata does not advertise client ID metadata documents: %v", meta)
	}

	cfg := &oauth2.Config{ClientID: clientID, RedirectURL: "http://127.0.0.1:1/callback", Scopes: []string{"mcp"},
		Endpoint: oauth2.Endpoint{AuthURL: issuer + "/oauth2/authorize", TokenURL: issuer + "/oauth2/token", AuthStyle: oauth2.AuthStyleInParams}}
	verifier := oauth2.GenerateVerifier()
	browser := &http.Client{CheckRedirect: func(r *http.Request, via []*http.Request) error {
		if r.URL.Path == "/callback" {
			return http.ErrUseLastResponse
		}
		return nil
	}}
	resp, err = browser.Get(cfg.AuthCodeURL("st", oauth2.S256ChallengeOption(verifier)))
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(page), "Doc Client (127.0.0.1:") {
		t.Fatalf("the consent page does not name the document's client and host: %d %s", resp.StatusCode, page)
	}
	f := url.Values{"id": {string(idRE.FindSubmatch(page)[1])}, "csrf": {string(csrfRE.FindSubmatch(page)[1])},
		"user": {"alice"}, "password": {"alice-password"}, "agent": {"reader"}, "decision": {"allow"}}
	resp, err = browser.PostForm(issuer+"/oauth2/login", f)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	tok, err := cfg.Exchange(context.Background(), loc.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("token for the document's client: %v", err)
	}
	if tok.AccessToken == "" {
		t.Fatal("no access token")
	}

	liar := *cfg
	liar.ClientID = host.URL + "/liar.json"
	resp, err = browser.Get(liar.AuthCodeURL("st", oauth2.S256ChallengeOption(verifier)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		t.Error("a document naming another client ID was accepted")
	}
}

// TestMetadataDocumentsFromPublicAddressesOnly: the default client does
// not fetch from loopback (the URL is the client's choice).
func TestMetadataDocumentsFromPublicAddressesOnly(t *testing.T) {
	host := httptest.NewTLSServer(http.NotFoundHandler())
	defer host.Close()
	if _, err := publicOnly().Get(host.URL + "/client.json"); err == nil || !strings.Contains(err.Error(), "public addresses only") {
		t.Fatalf("fetched from loopback: %v", err)
	}
}
