package token

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/go-jose/go-jose/v4"
)

// SigningKey is the gateway's Ed25519 token-signing key.
type SigningKey struct {
	priv ed25519.PrivateKey
	kid  string
}

// LoadOrCreateKey reads the PEM-encoded PKCS#8 Ed25519 key at path, or
// generates and writes one (mode 0600) if the file does not exist.
func LoadOrCreateKey(path string) (*SigningKey, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return createKey(path)
	}
	if err != nil {
		return nil, fmt.Errorf("read signing key: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("read signing key %s: not a PEM PRIVATE KEY", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse signing key: %w", err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("parse signing key: %T is not Ed25519", k)
	}
	return NewSigningKey(priv)
}

func createKey(path string) (*SigningKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate signing key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("encode signing key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create key directory: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("write signing key: %w", err)
	}
	if err := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		f.Close()
		return nil, fmt.Errorf("write signing key: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("write signing key: %w", err)
	}
	return NewSigningKey(priv)
}

// NewSigningKey wraps an Ed25519 private key; its key ID is the RFC 7638
// thumbprint of the public key.
func NewSigningKey(priv ed25519.PrivateKey) (*SigningKey, error) {
	jwk := jose.JSONWebKey{Key: priv.Public()}
	tp, err := jwk.Thumbprint(cryptoSHA256)
	if err != nil {
		return nil, fmt.Errorf("thumbprint signing key: %w", err)
	}
	return &SigningKey{priv: priv, kid: b64(tp)}, nil
}

// Public returns the verification key.
func (k *SigningKey) Public() ed25519.PublicKey { return k.priv.Public().(ed25519.PublicKey) }

// KeyID returns the key's ID as written in token headers.
func (k *SigningKey) KeyID() string { return k.kid }

// JWKS returns the public key set for publication.
func (k *SigningKey) JWKS() jose.JSONWebKeySet {
	return jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{
		Key: k.Public(), KeyID: k.kid, Algorithm: string(jose.EdDSA), Use: "sig",
	}}}
}
