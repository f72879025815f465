package gateway

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// writePair writes a certificate for 127.0.0.1 signed by ca (and its key)
// to dir, with the given serial; it returns the certificate.
func writePair(t *testing.T, dir string, ca *x509.Certificate, caKey *ecdsa.PrivateKey, serial int64) *x509.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "gateway.example"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	os.WriteFile(filepath.Join(dir, "key.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)
	os.WriteFile(filepath.Join(dir, "cert.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	c, _ := x509.ParseCertificate(der)
	return c
}

// TestOperatorCertificate: the agent listener serves the operator's own
// certificate and key, picks up a renewal at the next handshake, and keeps
// serving the previous pair when a renewal is broken.
func TestOperatorCertificate(t *testing.T) {
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "operator CA"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour)}
	caDER, _ := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	ca, _ := x509.ParseCertificate(caDER)
	dir := t.TempDir()
	writePair(t, dir, ca, caKey, 100)
	h := startGateway(t, demoConfig+"listen: {tls: {enabled: true, cert_file: "+filepath.Join(dir, "cert.pem")+", key_file: "+filepath.Join(dir, "key.pem")+"}}\n", map[string]string{"policy.cedar": demoPolicy})
	defer h.stop()
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	served := func() int64 {
		t.Helper()
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, DisableKeepAlives: true}
		resp, err := (&http.Client{Transport: tr}).Get("https://" + h.g.AgentAddr() + "/.well-known/oauth-protected-resource")
		if err != nil {
			t.Fatalf("TLS with the operator's CA: %v", err)
		}
		resp.Body.Close()
		return resp.TLS.PeerCertificates[0].SerialNumber.Int64()
	}
	if s := served(); s != 100 {
		t.Fatalf("served serial %d, want the operator's 100", s)
	}
	time.Sleep(10 * time.Millisecond) // a distinct modification time
	writePair(t, dir, ca, caKey, 101)
	if s := served(); s != 101 {
		t.Fatalf("after renewal served %d, want 101", s)
	}
	os.WriteFile(filepath.Join(dir, "cert.pem"), []byte("not a certificate"), 0o600)
	if s := served(); s != 101 {
		t.Fatalf("after a broken renewal served %d, want the previous 101", s)
	}
}
