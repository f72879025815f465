package mcpproxy

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/wire"
)

// An HTTP upstream's requests follow a redirect within its origin only: a
// redirect elsewhere would carry its configured headers (an API key) to a
// host the operator never named.
func TestHTTPUpstreamRedirectsStayInItsOrigin(t *testing.T) {
	var elsewhere atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		elsewhere.Add(1)
		http.Error(w, "not here", http.StatusTeapot)
	}))
	defer other.Close()
	var keys atomic.Int32
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/away":
			http.Redirect(w, r, other.URL+"/mcp", http.StatusTemporaryRedirect)
		case "/loop":
			http.Redirect(w, r, "/loop", http.StatusTemporaryRedirect)
		case "/moved":
			http.Redirect(w, r, "/mcp", http.StatusPermanentRedirect)
		case "/mcp":
			if r.Header.Get("X-Api-Key") == "k-123" {
				keys.Add(1)
			}
			io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-11-25","capabilities":{},"serverInfo":{"name":"t","version":"1"}}}`)
		}
	}))
	defer up.Close()
	init, err := wire.Parse([]byte(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"c","version":"1"}}}`), 0)
	if err != nil {
		t.Fatal(err)
	}
	call := func(path string) error {
		cfg := &config.HTTPServer{URL: up.URL + path, Headers: map[string]config.Value{"X-Api-Key": {Value: "k-123"}}}
		dial, err := HTTPDialer(cfg, t.TempDir(), nil, 4, config.Limits{}, slog.New(slog.NewTextHandler(io.Discard, nil)), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		conn, err := dial(context.Background())
		if err != nil {
			return err
		}
		defer conn.Close()
		_, err = conn.RoundTrip(context.Background(), init, nil)
		return err
	}
	if err := call("/moved"); err != nil {
		t.Fatalf("a redirect within the origin: %v", err)
	}
	if keys.Load() != 1 {
		t.Fatalf("the upstream got its key %d times", keys.Load())
	}
	if err := call("/away"); err == nil || !strings.Contains(err.Error(), "another origin") {
		t.Fatalf("a redirect to another origin: %v", err)
	}
	if n := elsewhere.Load(); n != 0 {
		t.Fatalf("the other origin got %d requests", n)
	}
	if err := call("/loop"); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Fatalf("a redirect loop: %v", err)
	}
}
