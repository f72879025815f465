package gateway

import (
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// certFiles serves the operator's certificate and key, read again when
// either file changes (a renewal by certbot, cert-manager or the like): a
// handshake looks at their modification times and sizes; a pair that does
// not load keeps the previous one serving, and says so in the log once.
type certFiles struct {
	cert, key string
	onError   func(error)

	mu      sync.Mutex
	current *tls.Certificate
	stamp   string // modification times and sizes of what current was read from
	failed  string // the stamp that last failed to load
}

func newCertFiles(dir, cert, key string, onError func(error)) (*certFiles, error) {
	if !filepath.IsAbs(cert) {
		cert = filepath.Join(dir, cert)
	}
	if !filepath.IsAbs(key) {
		key = filepath.Join(dir, key)
	}
	c := &certFiles{cert: cert, key: key, onError: onError}
	if _, err := c.get(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *certFiles) stampNow() string {
	s := ""
	for _, p := range []string{c.cert, c.key} {
		if fi, err := os.Stat(p); err == nil {
			s += fmt.Sprintf("%d/%d;", fi.ModTime().UnixNano(), fi.Size())
		}
	}
	return s
}

// get returns the certificate, reading the files again if they changed.
func (c *certFiles) get() (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	stamp := c.stampNow()
	if c.current != nil && (stamp == c.stamp || stamp == c.failed) {
		return c.current, nil
	}
	pair, err := tls.LoadX509KeyPair(c.cert, c.key)
	if err == nil && pair.Leaf != nil && time.Now().After(pair.Leaf.NotAfter) {
		err = fmt.Errorf("expired on %s", pair.Leaf.NotAfter.Format(time.RFC3339))
	}
	if err != nil {
		err = fmt.Errorf("listen.tls: %s and %s: %w", c.cert, c.key, err)
		if c.current == nil {
			return nil, err
		}
		c.failed = stamp
		c.onError(err) // keep serving the previous pair
		return c.current, nil
	}
	c.current, c.stamp, c.failed = &pair, stamp, ""
	return c.current, nil
}

func (c *certFiles) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) { return c.get() }
