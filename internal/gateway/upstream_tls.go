package gateway

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/identity"
	"github.com/portcullis-dev/portcullis/internal/token"
)

// upstreamTLS is the TLS the gateway speaks to an HTTP upstream: the roots
// of ca_file (else the system's), and its identity in mutual TLS (its own
// SVID, or the operator's certificate). nil: Go's defaults.
func (g *Gateway) upstreamTLS(h *config.HTTPServer) (*tls.Config, error) {
	if h.CAFile == "" && h.ClientCertificate == nil {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if h.CAFile != "" {
		b, err := os.ReadFile(g.cfg.Path(h.CAFile))
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("ca_file %s: no PEM certificate", h.CAFile)
		}
		tc.RootCAs = pool
	}
	switch c := h.ClientCertificate; {
	case c == nil:
	case c.SVID:
		tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return g.gatewaySVID() }
	default:
		cert, key := g.cfg.Path(c.CertFile), g.cfg.Path(c.KeyFile)
		if _, err := tls.LoadX509KeyPair(cert, key); err != nil {
			return nil, fmt.Errorf("client_certificate: %w", err)
		}
		tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			kp, err := tls.LoadX509KeyPair(cert, key) // the operator may rotate it
			return &kp, err
		}
	}
	return tc, nil
}

// gatewaySVID is the gateway's own X.509-SVID (spiffe://TD/gateway), for
// mutual TLS towards upstreams: issued by its CA for a day, renewed when
// less than an hour is left.
func (g *Gateway) gatewaySVID() (*tls.Certificate, error) {
	g.svidMu.Lock()
	defer g.svidMu.Unlock()
	if c := g.svid; c != nil && time.Until(c.Leaf.NotAfter) > time.Hour {
		return c, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		return nil, err
	}
	id, err := spiffeid.FromSegments(g.ca.TrustDomain(), "gateway")
	if err != nil {
		return nil, err
	}
	cert, err := g.ca.SignCSR(csr, id, identity.MaxSVIDTTL)
	if err != nil {
		return nil, err
	}
	if cert == nil {
		return nil, errors.New("gateway svid: not issued")
	}
	g.svid = &tls.Certificate{Certificate: [][]byte{cert.Raw, g.ca.Certificate().Raw}, PrivateKey: key, Leaf: cert}
	return g.svid, nil
}

// assertion signs the per-request assertion towards the upstream at
// audience (mcpproxy.Options.Assert).
func (g *Gateway) assertion(audience string, a token.Assertion) (string, error) {
	a.Issuer, a.Audience = g.cfg.Auth.Issuer, []string{audience}
	return g.key.Assert(a, time.Now())
}
