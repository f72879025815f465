package gateway

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/authn"
	"github.com/portcullis-dev/portcullis/internal/identity"
	"github.com/portcullis-dev/portcullis/internal/store"
	"github.com/portcullis-dev/portcullis/internal/token"
)

func TestEnrolmentMutualTLSRotationAndRevocation(t *testing.T) {
	t.Parallel()
	h := startGateway(t, demoConfig+"listen: {tls: {enabled: true}}\nidentity: {trust_domain: acme.test, svid_ttl: 10m}\n", map[string]string{"policy.cedar": demoPolicy})
	ctx := context.Background()
	gw := "https://" + h.g.AgentAddr()
	if h.g.AgentURL() != gw+"/mcp" {
		t.Errorf("the agent endpoint of a TLS listener is %s", h.g.AgentURL())
	}
	trust := x509.NewCertPool()
	trust.AddCert(h.g.ca.Certificate())
	dir := t.TempDir()

	jt, _, err := cli(t, h.cfg).CreateJoinToken(ctx, "reader", "test")
	if err != nil {
		t.Fatal(err)
	}
	id, err := identity.Enrol(ctx, gw, trust, jt, dir)
	if err != nil || !strings.HasPrefix(id, "spiffe://acme.test/agent/reader/") {
		t.Fatalf("enrol: %s %v", id, err)
	}
	if _, err := identity.Enrol(ctx, gw, trust, jt, t.TempDir()); err == nil {
		t.Fatal("a join token was used twice")
	}
	if _, err := identity.Enrol(ctx, gw, trust, "pcj-forged", t.TempDir()); err == nil {
		t.Fatal("a forged join token enrolled")
	}
	if st, _ := os.Stat(filepath.Join(dir, identity.AgentKeyFile)); st.Mode().Perm() != 0o600 {
		t.Errorf("agent key mode %v", st.Mode().Perm())
	}

	// The agent connects over mutual TLS with its SVID alone.
	connect := func(dir string, bearer string) (*mcp.ClientSession, error) {
		pair, err := tls.LoadX509KeyPair(filepath.Join(dir, identity.AgentSVIDFile), filepath.Join(dir, identity.AgentKeyFile))
		if err != nil {
			return nil, err
		}
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: trust, Certificates: []tls.Certificate{pair}}}
		var rt http.RoundTripper = tr
		if bearer != "" {
			rt = roundTripperFunc(func(r *http.Request) (*http.Response, error) {
				r = r.Clone(r.Context())
				r.Header.Set("Authorization", "Bearer "+bearer)
				return tr.RoundTrip(r)
			})
		}
		return mcp.NewClient(&mcp.Implementation{Name: "svid-agent"}, nil).Connect(ctx,
			&mcp.StreamableClientTransport{Endpoint: gw + "/mcp", HTTPClient: &http.Client{Transport: rt}, MaxRetries: -1}, nil)
	}
	s, err := connect(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	if got := toolNames(t, s); !slices.Contains(got, "demo__read_file") {
		t.Errorf("svid agent sees %v", got)
	}
	if e := h.findEvent(func(e *audit.Event) bool { return e.Agent == "reader" && e.Credential == id }); e == nil {
		t.Error("decisions not attributed to the SVID")
	}
	s.Close()

	// A task token bound to this certificate (RFC 8705) works only with it.
	pair, _ := tls.LoadX509KeyPair(filepath.Join(dir, identity.AgentSVIDFile), filepath.Join(dir, identity.AgentKeyFile))
	leaf, _ := x509.ParseCertificate(pair.Certificate[0])
	raw, _, err := cli(t, h.cfg).StartTask(ctx, token.Task{Agent: "reader", Tools: []string{"demo__list_files"}, Budget: 5, X5T: identity.CertThumbprint(leaf)}, "", 5*time.Minute, "test")
	if err != nil {
		t.Fatal(err)
	}
	s, err = connect(dir, raw)
	if err != nil {
		t.Fatal(err)
	}
	if got := toolNames(t, s); !slices.Equal(got, []string{"demo__list_files"}) {
		t.Errorf("cert-bound task sees %v", got)
	}
	s.Close()
	jt2, _, _ := cli(t, h.cfg).CreateJoinToken(ctx, "mailer", "test")
	other := t.TempDir()
	if _, err := identity.Enrol(ctx, gw, trust, jt2, other); err != nil {
		t.Fatal(err)
	}
	if _, err := connect(other, raw); err == nil {
		t.Error("a cert-bound task token worked with another certificate")
	}

	// Rotation keeps the identity with a new key and certificate, and
	// retires the old certificate (a stolen copy of it is worth nothing).
	old, _ := os.ReadFile(filepath.Join(dir, identity.AgentSVIDFile))
	oldKey, _ := os.ReadFile(filepath.Join(dir, identity.AgentKeyFile))
	stolen := t.TempDir()
	writeFileT(t, filepath.Join(stolen, identity.AgentSVIDFile), old)
	writeFileT(t, filepath.Join(stolen, identity.AgentKeyFile), oldKey)
	if s, err := connect(stolen, ""); err != nil {
		t.Fatalf("the current SVID before rotation: %v", err)
	} else {
		s.Close()
	}
	id2, err := identity.Rotate(ctx, gw, trust, dir)
	if err != nil || id2 != id {
		t.Fatalf("rotate: %s %v", id2, err)
	}
	if now, _ := os.ReadFile(filepath.Join(dir, identity.AgentSVIDFile)); string(now) == string(old) {
		t.Error("rotation returned the same certificate")
	}
	time.Sleep(authn.RevocationRefresh + 100*time.Millisecond)
	if s, err := connect(stolen, ""); err == nil {
		s.Close()
		t.Error("the certificate before the rotation still authenticates")
	}
	// Nor does a task token bound to it, presented with it.
	if s, err := connect(stolen, raw); err == nil {
		s.Close()
		t.Error("a task token bound to the rotated certificate still works with it")
	}
	if s, err := connect(dir, ""); err != nil {
		t.Errorf("the rotated certificate: %v", err)
	} else {
		s.Close()
	}

	// Revoking the agent refuses its SVID at the next request.
	if err := cli(t, h.cfg).Revoke(ctx, store.RevokeAgent, "reader", "ops", "decommissioned"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(authn.RevocationRefresh + 100*time.Millisecond)
	if _, err := connect(dir, ""); err == nil {
		t.Error("revoked agent connected")
	}
	ins, _ := cli(t, h.cfg).ListInstances(ctx)
	if len(ins) != 2 {
		t.Errorf("instances %+v", ins)
	}
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestFederatedTrustDomain: SVIDs of another trust domain (say, SPIRE's)
// are accepted for the agents the operator mapped, and only for them; that
// domain's authority cannot vouch for identities of ours.
func TestFederatedTrustDomain(t *testing.T) {
	t.Parallel()
	spire, err := identity.LoadOrCreateCA(t.TempDir(), "spire.test", nil)
	if err != nil {
		t.Fatal(err)
	}
	h := startGateway(t, demoConfig+`listen: {tls: {enabled: true}}
identity:
  trust_domain: acme.test
  federation:
    - trust_domain: spire.test
      bundle: DIR/spire.pem
      agents: {"spiffe://spire.test/ns/ai/sa/summariser": reader, "spiffe://spire.test/agent/reader/abc123": reader}
`, map[string]string{"policy.cedar": demoPolicy, "spire.pem": string(spire.BundlePEM())})
	ctx := context.Background()
	trust := x509.NewCertPool()
	trust.AddCert(h.g.ca.Certificate())
	svid := func(ca *identity.CA, id string) tls.Certificate {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
		sid, _ := spiffeid.FromString(id)
		cert, err := ca.SignCSR(csr, sid, 10*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		return tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key}
	}
	connect := func(c tls.Certificate) (*mcp.ClientSession, error) {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: trust, Certificates: []tls.Certificate{c}}}
		return mcp.NewClient(&mcp.Implementation{Name: "fed"}, nil).Connect(ctx,
			&mcp.StreamableClientTransport{Endpoint: "https://" + h.g.AgentAddr() + "/mcp", HTTPClient: &http.Client{Transport: tr}, MaxRetries: -1}, nil)
	}
	s, err := connect(svid(spire, "spiffe://spire.test/ns/ai/sa/summariser"))
	if err != nil {
		t.Fatalf("mapped foreign SVID refused: %v", err)
	}
	if got := toolNames(t, s); !slices.Contains(got, "demo__read_file") {
		t.Errorf("federated agent sees %v", got)
	}
	s.Close()
	if _, err := connect(svid(spire, "spiffe://spire.test/ns/ai/sa/other")); err == nil {
		t.Error("unmapped foreign SVID accepted")
	}
	if _, err := connect(svid(spire, "spiffe://acme.test/agent/mailer/forged")); err == nil {
		t.Error("a foreign authority vouched for an identity of our trust domain")
	}
	// A mapped foreign SVID shaped like one of ours (/agent/A/I) must not
	// rotate into a local SVID: it would skip the join token and could
	// supersede a real instance.
	shaped := "spiffe://spire.test/agent/reader/abc123"
	cert := svid(spire, shaped)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csrDER, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	body := `{"csr":"` + base64.StdEncoding.EncodeToString(csrDER) + `"}`
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: trust, Certificates: []tls.Certificate{cert}}}
	resp, err := (&http.Client{Transport: tr}).Post("https://"+h.g.AgentAddr()+"/v1/svid/rotate", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("a federated SVID asking to rotate: %d, want 403", resp.StatusCode)
	}
}

func TestJoinTokensExpireAndRetirement(t *testing.T) {
	t.Parallel()
	h := startGateway(t, demoConfig+"listen: {tls: {enabled: true}}\n", map[string]string{"policy.cedar": demoPolicy})
	ctx := context.Background()
	trust := x509.NewCertPool()
	trust.AddCert(h.g.ca.Certificate())
	gw := "https://" + h.g.AgentAddr()
	if err := h.g.store.AddJoinToken(ctx, "pcj-expired", "reader", time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := identity.Enrol(ctx, gw, trust, "pcj-expired", t.TempDir()); err == nil {
		t.Fatal("an expired join token enrolled")
	}
	jt, _, _ := cli(t, h.cfg).CreateJoinToken(ctx, "reader", "test")
	dir := t.TempDir()
	id, err := identity.Enrol(ctx, gw, trust, jt, dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := cli(t, h.cfg).RetireInstance(ctx, id, "ops"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(authn.RevocationRefresh + 100*time.Millisecond)
	if _, err := identity.Rotate(ctx, gw, trust, dir); err == nil {
		t.Error("a retired instance rotated its SVID")
	}
	ins, _ := cli(t, h.cfg).ListInstances(ctx)
	if len(ins) != 1 || ins[0].State != "retired" {
		t.Errorf("instances %+v", ins)
	}
}

func writeFileT(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
