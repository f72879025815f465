package identity

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// CA issues X.509-SVIDs to agents: SPIFFE IDs of the form
// spiffe://<trust-domain>/agent/<name>/<instance>, ECDSA P-256 keys that
// agents generate and keep (the CA signs their CSRs), short lifetimes.
type CA struct {
	td   spiffeid.TrustDomain
	cert *x509.Certificate
	key  crypto.Signer
	now  func() time.Time
}

// SVID lifetime bounds.
const (
	MinSVIDTTL = time.Minute
	MaxSVIDTTL = time.Hour
	caTTL      = 5 * 365 * 24 * time.Hour
)

// Files in the data directory's keys folder.
const (
	CACertFile = "ca.pem"
	CAKeyFile  = "ca-key.pem"
)

// LoadOrCreateCA reads the CA from dir, creating a self-signed P-256 root
// for trust domain td on first use.
func LoadOrCreateCA(dir, td string, now func() time.Time) (*CA, error) {
	tdom, err := spiffeid.TrustDomainFromString(td)
	if err != nil {
		return nil, fmt.Errorf("trust domain: %w", err)
	}
	if now == nil {
		now = time.Now
	}
	certPEM, err := os.ReadFile(filepath.Join(dir, CACertFile))
	if errors.Is(err, fs.ErrNotExist) {
		return createCA(dir, tdom, now)
	}
	if err != nil {
		return nil, fmt.Errorf("read CA: %w", err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, CAKeyFile))
	if err != nil {
		return nil, fmt.Errorf("read CA key: %w", err)
	}
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return nil, errors.New("read CA: not PEM")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse CA: %w", err)
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse CA key: %w", err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, errors.New("parse CA key: not a signing key")
	}
	return &CA{td: tdom, cert: cert, key: signer, now: now}, nil
}

func createCA(dir string, td spiffeid.TrustDomain, now func() time.Time) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	id := spiffeid.RequireFromPath(td, "")
	u, _ := url.Parse(id.String())
	t := now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{Organization: []string{"Portcullis"}, CommonName: "Portcullis agent CA " + td.String()},
		NotBefore: t.Add(-time.Minute), NotAfter: t.Add(caTTL), IsCA: true, BasicConstraintsValid: true, MaxPathLenZero: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, URIs: []*url.URL{u},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	cert, _ := x509.ParseCertificate(der)
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if err := writeNew(filepath.Join(dir, CAKeyFile), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, CACertFile), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, err
	}
	return &CA{td: td, cert: cert, key: key, now: now}, nil
}

func writeNew(path string, b []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}

// TrustDomain is the CA's trust domain.
func (c *CA) TrustDomain() spiffeid.TrustDomain { return c.td }

// Certificate is the CA certificate (the trust bundle).
func (c *CA) Certificate() *x509.Certificate { return c.cert }

// BundlePEM is the trust bundle as PEM.
func (c *CA) BundlePEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.cert.Raw})
}

// AgentID is the SPIFFE ID of an agent instance.
func (c *CA) AgentID(agent, instance string) (spiffeid.ID, error) {
	return spiffeid.FromSegments(c.td, "agent", agent, instance)
}

// SignCSR issues an X.509-SVID for id from a CSR. The CSR's own signature
// proves the requester holds the key; only its public key is used (names
// and extensions in it are ignored).
func (c *CA) SignCSR(csrDER []byte, id spiffeid.ID, ttl time.Duration) (*x509.Certificate, error) {
	if ttl < MinSVIDTTL || ttl > MaxSVIDTTL {
		return nil, fmt.Errorf("svid lifetime %s outside [%s, %s]", ttl, MinSVIDTTL, MaxSVIDTTL)
	}
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, fmt.Errorf("csr: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("csr signature: %w", err)
	}
	if pk, ok := csr.PublicKey.(*ecdsa.PublicKey); !ok || pk.Curve != elliptic.P256() {
		return nil, errors.New("csr: want an ECDSA P-256 key")
	}
	u, _ := url.Parse(id.String())
	t := c.now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{Organization: []string{"Portcullis agents"}},
		NotBefore: t.Add(-time.Minute), NotAfter: t.Add(ttl), URIs: []*url.URL{u},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, csr.PublicKey, c.key)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

// ServerCertificate issues the gateway's own TLS certificate for names
// (DNS names or IPs), valid for a day; the gateway renews it at start.
func (c *CA) ServerCertificate(names []string) ([]byte, crypto.Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	t := c.now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: "portcullis-gateway"},
		NotBefore: t.Add(-time.Minute), NotAfter: t.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, key.Public(), c.key)
	return der, key, err
}

// SVIDOf returns the SPIFFE ID of a verified client certificate: exactly
// one URI SAN, a spiffe:// ID.
func SVIDOf(cert *x509.Certificate) (spiffeid.ID, error) {
	if len(cert.URIs) != 1 {
		return spiffeid.ID{}, errors.New("svid: want exactly one URI SAN")
	}
	return spiffeid.FromURI(cert.URIs[0])
}

// AgentOf parses an agent SVID path /agent/<name>/<instance>.
func AgentOf(id spiffeid.ID) (agent, instance string, ok bool) {
	parts := strings.Split(strings.TrimPrefix(id.Path(), "/"), "/")
	if len(parts) != 3 || parts[0] != "agent" || parts[1] == "" || parts[2] == "" {
		return "", "", false
	}
	return parts[1], parts[2], true
}

// CertThumbprint is RFC 8705's x5t#S256: base64url SHA-256 of the DER.
func CertThumbprint(cert *x509.Certificate) string {
	s := sha256.Sum256(cert.Raw)
	return base64.RawURLEncoding.EncodeToString(s[:])
}
