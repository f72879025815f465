package gateway

import (
	"crypto/tls"
	"crypto/x509"
)

// agentTLS is the agent listener's TLS config: the gateway's certificate
// from the agent CA, and client SVIDs verified against the CA (accepted,
// not required: token-only agents still connect).
func (g *Gateway) agentTLS() (*tls.Config, error) {
	der, key, err := g.ca.ServerCertificate(g.cfg.Listen.TLS.Names)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(g.ca.Certificate())
	for _, c := range g.trust.Federated() {
		pool.AddCert(c)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{{Certificate: [][]byte{der, g.ca.Certificate().Raw}, PrivateKey: key}},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    pool,
	}, nil
}
