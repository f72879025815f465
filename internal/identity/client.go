package identity

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// The agent side of enrolment and rotation: the key is generated here and
// never sent; only a CSR is.

// Files an agent keeps in its identity directory.
const (
	AgentKeyFile    = "key.pem"
	AgentSVIDFile   = "svid.pem"
	AgentBundleFile = "bundle.pem"
)

type svidReply struct {
	SPIFFEID string    `json:"spiffe_id"`
	SVID     string    `json:"svid"`
	Bundle   string    `json:"bundle"`
	Expires  time.Time `json:"expires"`
}

// Enrol creates a key in dir, sends a CSR with the join token to the
// gateway, and stores the SVID and trust bundle it returns. It returns the
// SPIFFE ID. trust verifies the gateway (its CA bundle, obtained out of band).
func Enrol(ctx context.Context, gateway string, trust *x509.CertPool, joinToken, dir string) (string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		return "", err
	}
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: trust, MinVersion: tls.VersionTLS12}}}
	reply, err := post(ctx, client, gateway+"/v1/enrol", map[string]string{"join_token": joinToken, "csr": base64.StdEncoding.EncodeToString(csr)})
	if err != nil {
		return "", err
	}
	return reply.SPIFFEID, save(dir, key, reply)
}

// Rotate replaces the SVID in dir with a fresh one (new key), authenticating
// with the current SVID over mutual TLS.
func Rotate(ctx context.Context, gateway string, trust *x509.CertPool, dir string) (string, error) {
	current, err := tls.LoadX509KeyPair(filepath.Join(dir, AgentSVIDFile), filepath.Join(dir, AgentKeyFile))
	if err != nil {
		return "", fmt.Errorf("load current svid: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		return "", err
	}
	tc := &tls.Config{RootCAs: trust, Certificates: []tls.Certificate{current}, MinVersion: tls.VersionTLS12}
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
	reply, err := post(ctx, client, gateway+"/v1/svid/rotate", map[string]string{"csr": base64.StdEncoding.EncodeToString(csr)})
	if err != nil {
		return "", err
	}
	return reply.SPIFFEID, save(dir, key, reply)
}

func post(ctx context.Context, c *http.Client, url string, body any) (*svidReply, error) {
	b, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		json.NewDecoder(resp.Body).Decode(&e)
		return nil, fmt.Errorf("%s: %s", resp.Status, e.Error)
	}
	var r svidReply
	if err := json.NewDecoder(http.MaxBytesReader(nil, resp.Body, 1<<20)).Decode(&r); err != nil {
		return nil, err
	}
	return &r, nil
}

func save(dir string, key *ecdsa.PrivateKey, r *svidReply) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	// Write the key first: an SVID without its key is useless, the reverse harmless.
	if err := os.WriteFile(filepath.Join(dir, AgentKeyFile), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, AgentSVIDFile), []byte(r.SVID), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, AgentBundleFile), []byte(r.Bundle), 0o644)
}
