package secret

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
)

// KeyFile is the sealing key in the data directory's keys folder.
const KeyFile = "secrets.key"

// MaxValueBytes bounds one secret.
const MaxValueBytes = 64 << 10

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// Value is a secret. It prints as a redaction.
type Value struct{ b []byte }

// String implements fmt.Stringer with a redaction.
func (Value) String() string { return "[secret]" }

// GoString implements fmt.GoStringer with a redaction.
func (Value) GoString() string { return "[secret]" }

// Reveal returns the secret for injection into an upstream request.
func (v Value) Reveal() string { return string(v.b) }

// Store persists sealed secrets.
type Store interface {
	PutSecret(ctx context.Context, name string, sealed []byte) error
	GetSecret(ctx context.Context, name string) ([]byte, error)
	SecretNames(ctx context.Context) ([]string, error)
}

// Vault seals and opens secrets.
type Vault struct {
	aead  cipher.AEAD
	store Store
}

// Open returns a Vault with the key in dir (created on first use).
func Open(dir string, s Store) (*Vault, error) {
	path := filepath.Join(dir, KeyFile)
	key, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		key = make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, fmt.Errorf("create secrets key: %w", err)
		}
		if _, err := f.Write(key); err != nil {
			f.Close()
			return nil, err
		}
		if err := f.Close(); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, fmt.Errorf("read secrets key: %w", err)
	}
	if len(key) != 32 {
		return nil, errors.New("secrets key: want 32 bytes")
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Vault{aead: aead, store: s}, nil
}

// Put seals and stores a secret.
func (v *Vault) Put(ctx context.Context, name string, value []byte) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("secret name %q: want %s", name, nameRE)
	}
	if len(value) == 0 || len(value) > MaxValueBytes {
		return fmt.Errorf("secret %s: value must be 1 to %d bytes", name, MaxValueBytes)
	}
	nonce := make([]byte, v.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return err
	}
	return v.store.PutSecret(ctx, name, v.aead.Seal(nonce, nonce, value, []byte(name)))
}

// Get opens a stored secret. Errors never include the value.
func (v *Vault) Get(ctx context.Context, name string) (Value, error) {
	sealed, err := v.store.GetSecret(ctx, name)
	if err != nil {
		return Value{}, fmt.Errorf("secret %s: %w", name, err)
	}
	n := v.aead.NonceSize()
	if len(sealed) < n {
		return Value{}, fmt.Errorf("secret %s: corrupt", name)
	}
	b, err := v.aead.Open(nil, sealed[:n], sealed[n:], []byte(name))
	if err != nil {
		return Value{}, fmt.Errorf("secret %s: cannot be opened (wrong key or tampered)", name)
	}
	return Value{b: b}, nil
}

// Names lists stored secrets (names only).
func (v *Vault) Names(ctx context.Context) ([]string, error) { return v.store.SecretNames(ctx) }
