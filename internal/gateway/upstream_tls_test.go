package gateway

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/portcullis-dev/portcullis/internal/token"
)

// The gateway's identity towards an HTTP upstream: an upstream with a
// private CA reached through ca_file, that requires a client certificate
// (the gateway presents its own SVID, which chains to its CA) and reads,
// with every call, the gateway's signed assertion of who is behind it
// (verified with the gateway's JWKS). Without a client certificate the
// upstream refuses the gateway.
func TestGatewayIdentityTowardsUpstreams(t *testing.T) {
	srv := mcp.NewServer(&mcp.Implementation{Name: "private"}, nil)
	srv.AddTool(&mcp.Tool{Name: "whoami", InputSchema: map[string]any{"type": "object"}, Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true}},
		func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "ok"}}}, nil
		})
	type seen struct {
		clientID  string
		assertion string
	}
	var mu sync.Mutex
	var seenCalls []seen
	handler := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, nil)
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		if bytes.Contains(body, []byte(`"tools/call"`)) {
			s := seen{assertion: r.Header.Get("X-Gateway-Assertion")}
			if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 && len(r.TLS.PeerCertificates[0].URIs) == 1 {
				s.clientID = r.TLS.PeerCertificates[0].URIs[0].String()
			}
			mu.Lock()
			seenCalls = append(seenCalls, s)
			mu.Unlock()
		}
		handler.ServeHTTP(w, r)
	}))
	up.TLS = &tls.Config{ClientAuth: tls.RequireAnyClientCert}
	up.StartTLS()
	defer up.Close()
	caFile := filepath.Join(t.TempDir(), "upstream-ca.pem")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: up.Certificate().Raw}), 0o600)

	h := startGateway(t, fmt.Sprintf(`
version: 1
data_dir: DIR/data
policy: {paths: [DIR/policy.cedar]}
agents: [{name: reader, roles: [readers]}]
upstreams:
  - name: private
    http:
      url: %s/mcp
      ca_file: %s
      client_certificate: {svid: true}
      assertion: {header: X-Gateway-Assertion}
`, up.URL, caFile), map[string]string{"policy.cedar": `permit (principal, action == Action::"call_tool", resource in Upstream::"private");`})
	defer h.stop()
	s := h.mustConnect("reader")
	if _, err := s.CallTool(context.Background(), &mcp.CallToolParams{Name: "private__whoami", Arguments: map[string]any{}}); err != nil {
		t.Fatal(err)
	}
	snapshot := func() []seen {
		mu.Lock()
		defer mu.Unlock()
		return append([]seen(nil), seenCalls...)
	}
	calls := snapshot()
	if len(calls) != 1 {
		t.Fatalf("calls seen: %d", len(calls))
	}
	want := "spiffe://" + h.g.ca.TrustDomain().String() + "/gateway"
	if calls[0].clientID != want {
		t.Errorf("client certificate %q, want %q", calls[0].clientID, want)
	}
	svid, err := h.g.gatewaySVID()
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(h.g.ca.Certificate())
	if _, err := svid.Leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("the gateway's SVID does not chain to its CA: %v", err)
	}
	a, err := token.VerifyAssertion(calls[0].assertion, h.g.key.JWKS(), h.cfg.Auth.Issuer, up.URL+"/mcp", time.Now())
	if err != nil || a.Agent != "reader" || a.RequestID == "" || a.Session == "" {
		t.Fatalf("assertion: %+v %v", a, err)
	}
	if _, err := token.VerifyAssertion(calls[0].assertion, h.g.key.JWKS(), h.cfg.Auth.Issuer, "https://elsewhere.example/mcp", time.Now()); err == nil {
		t.Error("the assertion is valid for another upstream")
	}
	if _, err := token.VerifyAssertion(calls[0].assertion, h.g.key.JWKS(), h.cfg.Auth.Issuer, up.URL+"/mcp", time.Now().Add(2*time.Minute)); err == nil {
		t.Error("the assertion outlives its request")
	}

	// The operator's own certificate instead of the SVID.
	certFile, keyFile := operatorCert(t, "spiffe://example.org/operator-gateway")
	h3 := startGateway(t, fmt.Sprintf(`
version: 1
data_dir: DIR/data
policy: {paths: [DIR/policy.cedar]}
agents: [{name: reader, roles: [readers]}]
upstreams:
  - name: private
    http: {url: %s/mcp, ca_file: %s, client_certificate: {cert_file: %s, key_file: %s}}
`, up.URL, caFile, certFile, keyFile), map[string]string{"policy.cedar": `permit (principal, action == Action::"call_tool", resource in Upstream::"private");`})
	defer h3.stop()
	_, err = h3.mustConnect("reader").CallTool(context.Background(), &mcp.CallToolParams{Name: "private__whoami", Arguments: map[string]any{}})
	calls = snapshot()
	if err != nil || len(calls) != 2 || calls[1].clientID != "spiffe://example.org/operator-gateway" || calls[1].assertion != "" {
		t.Fatalf("with the operator's certificate: %v %+v", err, calls)
	}

	// Without a client certificate, the upstream refuses the gateway.
	h2 := startGatewayNoWait(t, fmt.Sprintf(`
version: 1
data_dir: DIR/data
policy: {paths: [DIR/policy.cedar]}
agents: [{name: reader, roles: [readers]}]
upstreams:
  - name: private
    http: {url: %s/mcp, ca_file: %s}
`, up.URL, caFile), map[string]string{"policy.cedar": `permit (principal, action == Action::"call_tool", resource in Upstream::"private");`})
	defer h2.stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h2.g.proxy.WaitReady(ctx) // the first attempt, refused
	if _, err := h2.mustConnect("reader").CallTool(ctx, &mcp.CallToolParams{Name: "private__whoami", Arguments: map[string]any{}}); err == nil {
		t.Fatal("the upstream took a gateway without a client certificate")
	}
}

// operatorCert writes a self-signed client certificate naming uri, and its
// key, as an operator's own.
func operatorCert(t *testing.T, uri string) (string, string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	u, _ := url.Parse(uri)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		URIs: []*url.URL{u}, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalPKCS8PrivateKey(key)
	dir := t.TempDir()
	cf, kf := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(cf, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(kf, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600)
	return cf, kf
}
