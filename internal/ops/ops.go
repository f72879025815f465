package ops

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/identity"
	"github.com/portcullis-dev/portcullis/internal/store"
	"github.com/portcullis-dev/portcullis/internal/token"
)

// The data directory's layout, relative to config's data_dir.
const (
	StoreFile = "portcullis.db"
	KeyFile   = "keys/token-signing.pem"
	KeysDir   = "keys" // the CA, the log key, the secret vault's key
)

// AdminAudience is the audience of admin-API tokens.
const AdminAudience = "portcullis-admin"

// ErrNoActor is returned when an operation that changes state names nobody
// as doing it: every change is attributed in the audit log.
var ErrNoActor = errors.New("who does this is not named")

// ErrIdentityProvider is returned when the OIDC provider that names users
// (identity.oidc) cannot be reached; the caller may retry later.
var ErrIdentityProvider = errors.New("identity provider unavailable")

// DataDir is the data directory cfg names, resolved against the
// configuration file's directory.
func DataDir(cfg *config.Config) string { return cfg.Path(cfg.DataDir) }

// Ops performs operations on one data directory.
type Ops struct {
	cfg   *config.Config
	dir   string
	st    *store.DB
	owned bool // Close closes the store

	keyOnce sync.Once
	key     *token.SigningKey
	keyErr  error

	usersMu sync.Mutex
	users   *identity.Users // OIDC verifier, discovered on first use
}

// Open opens cfg's data directory (creating it, as serve does) and its
// store, once for every operation that follows. Close releases it.
func Open(cfg *config.Config) (*Ops, error) {
	dir := DataDir(cfg)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	st, err := OpenStore(cfg, store.Options{})
	if err != nil {
		return nil, err
	}
	return &Ops{cfg: cfg, dir: dir, st: st, owned: true}, nil
}

// OpenStore opens the store cfg names: the PostgreSQL database of
// store.postgres (shared by a fleet of gateways), or else the SQLite file
// in the data directory. Either way the schema is brought up to date, or
// the store refused if its schema is newer than this binary's.
func OpenStore(cfg *config.Config, opts store.Options) (*store.DB, error) {
	if cfg.Store.Postgres != nil {
		url, err := cfg.Store.Postgres.Resolve(cfg.Path("."), nil)
		if err != nil {
			return nil, fmt.Errorf("store.postgres: %w", err)
		}
		return store.OpenPostgres(context.Background(), url, opts)
	}
	return store.OpenWith(filepath.Join(DataDir(cfg), StoreFile), opts)
}

// HasStore reports whether cfg's store exists already (a PostgreSQL store
// is taken to exist; a data directory may not have been used yet).
func HasStore(cfg *config.Config) bool {
	if cfg.Store.Postgres != nil {
		return true
	}
	_, err := os.Stat(filepath.Join(DataDir(cfg), StoreFile))
	return err == nil
}

// StoreName describes the store cfg names, for messages (never a secret).
func StoreName(cfg *config.Config) string {
	if cfg.Store.Postgres != nil {
		return "the PostgreSQL store (store.postgres)"
	}
	return filepath.Join(DataDir(cfg), StoreFile)
}

// With performs operations over a store the caller owns (the running
// gateway's), signing tokens with key (nil: the data directory's, loaded
// on first use).
func With(cfg *config.Config, st *store.DB, key *token.SigningKey) *Ops {
	o := &Ops{cfg: cfg, dir: DataDir(cfg), st: st}
	if key != nil {
		o.keyOnce.Do(func() { o.key = key })
	}
	return o
}

// Close closes the store if Open opened it.
func (o *Ops) Close() error {
	if o.owned {
		return o.st.Close()
	}
	return nil
}

// Store is the store operations read and write.
func (o *Ops) Store() *store.DB { return o.st }

// signingKey is the data directory's token-signing key, loaded (or created)
// on first use.
func (o *Ops) signingKey() (*token.SigningKey, error) {
	o.keyOnce.Do(func() {
		o.key, o.keyErr = token.LoadOrCreateKey(filepath.Join(o.dir, KeyFile))
	})
	return o.key, o.keyErr
}

// attributed refuses a change that names nobody as doing it.
func attributed(by string) error {
	if strings.TrimSpace(by) == "" {
		return ErrNoActor
	}
	return nil
}

// Config is the configuration the operations work under.
func (o *Ops) Config() *config.Config { return o.cfg }
