package authn

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"

	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/identity"
)

// MaxBundleBytes bounds a federated trust domain's bundle file.
const MaxBundleBytes = 1 << 20

// Trust is which SVIDs are accepted: those of the agent CA's trust domain,
// naming an agent by their path, and those of federated trust domains,
// chaining to that domain's own authorities and mapped to agents by
// configuration. A federated domain cannot vouch for ours.
type Trust struct {
	ca        *identity.CA
	pools     map[string]*x509.CertPool // per trust domain, its authorities
	foreign   map[string]string         // SPIFFE ID -> agent
	federated []*x509.Certificate
}

// LoadTrust builds the trust of the agent CA ca and the federated trust
// domains cfg names (identity.federation), reading their bundles.
func LoadTrust(cfg *config.Config, ca *identity.CA) (*Trust, error) {
	own := x509.NewCertPool()
	own.AddCert(ca.Certificate())
	t := &Trust{ca: ca, pools: map[string]*x509.CertPool{ca.TrustDomain().Name(): own}, foreign: map[string]string{}}
	for _, f := range cfg.Identity.Federation {
		b, err := cfg.ReadFile(f.Bundle, MaxBundleBytes)
		if err != nil {
			return nil, fmt.Errorf("federation %s: %w", f.TrustDomain, err)
		}
		pool := x509.NewCertPool()
		for rest := b; ; {
			var blk *pem.Block
			if blk, rest = pem.Decode(rest); blk == nil {
				break
			}
			c, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("federation %s bundle: %w", f.TrustDomain, err)
			}
			pool.AddCert(c)
			t.federated = append(t.federated, c)
		}
		t.pools[f.TrustDomain] = pool
		for id, agent := range f.Agents {
			t.foreign[id] = agent
		}
	}
	return t, nil
}

// Federated is the authorities of the federated trust domains (for the
// pool a TLS listener verifies client certificates against).
func (t *Trust) Federated() []*x509.Certificate { return t.federated }
