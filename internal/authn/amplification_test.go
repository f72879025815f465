package authn

// Found by an independent review (2026-11-30): unauthenticated
// amplification towards the issuer. Kept as a regression test.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/token"
)

func amplificationIdP(t *testing.T) (*httptest.Server, *atomic.Int64, *atomic.Int64) {
	priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	jwk, _ := json.Marshal(jose.JSONWebKey{Key: priv.Public(), KeyID: "k1", Algorithm: "ES256", Use: "sig"})
	var jwksHits, introHits atomic.Int64
	var srv *httptest.Server
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]string{"issuer": srv.URL, "jwks_uri": srv.URL + "/jwks", "introspection_endpoint": srv.URL + "/introspect"})
	})
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, r *http.Request) {
		jwksHits.Add(1)
		fmt.Fprintf(w, `{"keys":[%s]}`, jwk)
	})
	mux.HandleFunc("/introspect", func(w http.ResponseWriter, r *http.Request) {
		introHits.Add(1)
		fmt.Fprint(w, `{"active":false}`)
	})
	srv = httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, &jwksHits, &introHits
}

// TestForgedTokensDoNotAmplify: an unauthenticated client sending N
// tokens that merely *claim* the configured issuer (garbage signature, no
// valid aud/exp needed: go-oidc checks the signature first) makes the
// gateway fetch the issuer's JWKS N times. Likewise N garbage opaque tokens
// caused N introspection POSTs. Keys are now fetched at most once per
// keyRefresh and refusals are cached.
func TestForgedTokensDoNotAmplify(t *testing.T) {
	srv, jwksHits, introHits := amplificationIdP(t)
	k, err := token.LoadOrCreateKey(filepath.Join(t.TempDir(), "k.pem"))
	if err != nil {
		t.Fatal(err)
	}
	auth := config.Auth{Issuer: "pc", Audience: "gw", MaxTTL: config.Duration(time.Hour), External: []config.ExternalIssuer{{
		Issuer: srv.URL, Audience: "https://gw.example/mcp",
		Introspection: &config.Introspection{ClientID: "gw"},
	}}}
	a := New(Options{Key: k, Auth: auth, Agents: []config.Agent{{Name: "agent"}}})
	enc := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	forged := enc(`{"alg":"ES256","kid":"k1"}`) + "." + enc(`{"iss":"`+srv.URL+`"}`) + "." + enc(string(make([]byte, 64)))
	const n = 50
	for i := 0; i < n; i++ {
		r, _ := http.NewRequest("POST", "/mcp", nil)
		r.Header.Set("Authorization", "Bearer "+forged)
		if _, err := a.Authenticate(r); err == nil {
			t.Fatal("forged token accepted")
		}
		r2, _ := http.NewRequest("POST", "/mcp", nil)
		r2.Header.Set("Authorization", "Bearer same-garbage-opaque-token")
		if _, err := a.Authenticate(r2); err == nil {
			t.Fatal("opaque garbage accepted")
		}
	}
	if got := jwksHits.Load(); got > 1 {
		t.Errorf("%d forged JWTs made %d JWKS fetches, want at most 1 per %s", n, got, keyRefresh)
	}
	if got := introHits.Load(); got > 1 {
		t.Errorf("%d identical opaque tokens made %d introspection requests, want 1", n, got)
	}
}
