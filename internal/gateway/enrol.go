package gateway

import (
	"crypto/tls"
	"crypto/x509"
)

// agentTLS is the agent listener's TLS config: the gateway's certificate
// from the agent CA, and client SVIDs verified against the CA (accepted,
// not required: token-only agents still connect).
func (g *Gateway) agentTLS() (*tls.Config, error) {
	pool := x509.NewCertPool()
	pool.AddCert(g.ca.Certificate())
	for _, c := range g.trust.Federated() {
		pool.AddCert(c)
	}
	tc := &tls.Config{
		MinVersion: tls.VersionTLS12,
		ClientAuth: tls.VerifyClientCertIfGiven,
		ClientCAs:  pool,
	}
	if t := g.cfg.Listen.TLS; t.CertFile != "" {
		files, err := newCertFiles(g.cfg.Dir(), t.CertFile, t.KeyFile, func(err error) {
			g.log.Error("renewed TLS certificate not loaded; serving the previous one", "err", err)
		})
		if err != nil {
			return nil, err
		}
		tc.GetCertificate = files.getCertificate
		return tc, nil
	}
	der, key, err := g.ca.ServerCertificate(g.cfg.Listen.TLS.Names)
	if err != nil {
		return nil, err
	}
	tc.Certificates = []tls.Certificate{{Certificate: [][]byte{der, g.ca.Certificate().Raw}, PrivateKey: key}}
	return tc, nil
}
