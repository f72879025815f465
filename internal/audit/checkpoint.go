package audit

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/portcullis-dev/portcullis/internal/outbound"
	"github.com/portcullis-dev/portcullis/internal/store"
)

// Files of the log's signing key, in the data directory's keys folder. The
// public key (a note verifier key, "<origin>+<hash>+<key>") is what an
// auditor keeps elsewhere and gives to `portcullis audit verify --key`.
const (
	LogKeyFile    = "audit-log.key"
	LogPubKeyFile = "audit-log.pub"
)

// MaxNoteBytes bounds a checkpoint note read from anywhere.
const MaxNoteBytes = 16 << 10

// LoadOrCreateLogKey returns the checkpoint signer in dir, generating an
// Ed25519 note key named origin on first use.
func LoadOrCreateLogKey(dir, origin string) (note.Signer, string, error) {
	skPath, pkPath := filepath.Join(dir, LogKeyFile), filepath.Join(dir, LogPubKeyFile)
	sk, err := os.ReadFile(skPath)
	if errors.Is(err, fs.ErrNotExist) {
		skey, vkey, err := note.GenerateKey(rand.Reader, origin)
		if err != nil {
			return nil, "", fmt.Errorf("generate log key: %w", err)
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, "", fmt.Errorf("write log key: %w", err)
		}
		if err := writeExclusive(skPath, []byte(skey+"\n"), 0o600); err != nil {
			return nil, "", err
		}
		if err := os.WriteFile(pkPath, []byte(vkey+"\n"), 0o644); err != nil {
			return nil, "", fmt.Errorf("write log public key: %w", err)
		}
		sk = []byte(skey)
	} else if err != nil {
		return nil, "", fmt.Errorf("read log key: %w", err)
	}
	s, err := note.NewSigner(strings.TrimSpace(string(sk)))
	if err != nil {
		return nil, "", fmt.Errorf("parse log key: %w", err)
	}
	if s.Name() != origin {
		return nil, "", fmt.Errorf("log key is for origin %q, configured origin is %q", s.Name(), origin)
	}
	pk, err := os.ReadFile(pkPath)
	if err != nil {
		return nil, "", fmt.Errorf("read log public key: %w", err)
	}
	return s, strings.TrimSpace(string(pk)), nil
}

func writeExclusive(path string, b []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	return f.Close()
}

// Head is a parsed checkpoint: the C2SP tlog-checkpoint body.
type Head struct {
	Origin string
	Size   int64
	Root   []byte
}

// Body is the checkpoint text that is signed.
func (h Head) Body() string {
	return fmt.Sprintf("%s\n%d\n%s\n", h.Origin, h.Size, base64.StdEncoding.EncodeToString(h.Root))
}

// OpenCheckpoint verifies a signed checkpoint note with v and parses it.
func OpenCheckpoint(msg []byte, v note.Verifier) (Head, error) {
	if len(msg) > MaxNoteBytes {
		return Head{}, errors.New("checkpoint: too large")
	}
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		return Head{}, fmt.Errorf("checkpoint: %w", err)
	}
	lines := strings.Split(n.Text, "\n")
	if len(lines) < 4 || lines[len(lines)-1] != "" {
		return Head{}, errors.New("checkpoint: malformed body")
	}
	h := Head{Origin: lines[0]}
	if h.Origin != v.Name() {
		return Head{}, fmt.Errorf("checkpoint: origin %q, key is for %q", h.Origin, v.Name())
	}
	if h.Size, err = strconv.ParseInt(lines[1], 10, 64); err != nil || h.Size < 0 {
		return Head{}, errors.New("checkpoint: bad size")
	}
	if h.Root, err = base64.StdEncoding.DecodeString(lines[2]); err != nil || len(h.Root) != 32 {
		return Head{}, errors.New("checkpoint: bad root hash")
	}
	return h, nil
}

// CheckpointStore is what the Checkpointer reads and writes.
type CheckpointStore interface {
	State(ctx context.Context) (store.LogState, error)
	AddCheckpoint(ctx context.Context, c store.Checkpoint) error
}

// Checkpointer signs tree heads of the log and publishes them: in the
// store, and as copies in other directories and at an HTTP endpoint, so that
// whoever controls one host cannot rewrite history unnoticed.
type Checkpointer struct {
	Store    CheckpointStore
	Signer   note.Signer
	Origin   string
	Copies   []string // directories
	URL      string   // POST target, optional
	Interval time.Duration
	Log      *slog.Logger
	Client   Poster // for URL; nil: outbound.Default()

	mu   sync.Mutex
	last int64
}

// Run checkpoints every Interval until ctx ends.
func (c *Checkpointer) Run(ctx context.Context) error {
	t := time.NewTicker(c.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if _, err := c.Checkpoint(ctx); err != nil {
				c.Log.Error("audit checkpoint failed", "err", err)
			}
		}
	}
}

// Checkpoint signs the current tree head if the log grew since the last
// one, stores it and publishes the copies. It returns the head.
func (c *Checkpointer) Checkpoint(ctx context.Context) (Head, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st, err := c.Store.State(ctx)
	if err != nil {
		return Head{}, err
	}
	root, err := Root(st)
	if err != nil {
		return Head{}, err
	}
	h := Head{Origin: c.Origin, Size: st.Size, Root: root}
	if st.Size == c.last && c.last != 0 {
		return h, nil
	}
	msg, err := note.Sign(&note.Note{Text: h.Body()}, c.Signer)
	if err != nil {
		return Head{}, fmt.Errorf("sign checkpoint: %w", err)
	}
	if err := c.Store.AddCheckpoint(ctx, store.Checkpoint{Size: h.Size, Time: time.Now(), Note: msg}); err != nil {
		return Head{}, err
	}
	c.last = st.Size
	var errs []error
	for _, dir := range c.Copies {
		if err := writeCopy(dir, h.Size, msg); err != nil {
			errs = append(errs, err)
		}
	}
	if c.URL != "" {
		if err := c.post(ctx, msg); err != nil {
			errs = append(errs, err)
		}
	}
	return h, errors.Join(errs...)
}

// CopyName is the file name of a checkpoint copy.
func CopyName(size int64) string { return fmt.Sprintf("checkpoint-%012d", size) }

func writeCopy(dir string, size int64, msg []byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("copy checkpoint: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".checkpoint-*")
	if err != nil {
		return fmt.Errorf("copy checkpoint: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(msg); err != nil {
		tmp.Close()
		return fmt.Errorf("copy checkpoint: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("copy checkpoint: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("copy checkpoint: %w", err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, CopyName(size))); err != nil {
		return fmt.Errorf("copy checkpoint: %w", err)
	}
	return nil
}

func (c *Checkpointer) post(ctx context.Context, msg []byte) error {
	client := c.Client
	if client == nil {
		client = outbound.Default()
	}
	if err := client.Post(ctx, c.URL, nil, "text/plain; charset=utf-8", msg); err != nil {
		return fmt.Errorf("post checkpoint: %w", err)
	}
	return nil
}

// ReadCopies reads every checkpoint copy in dir.
func ReadCopies(dir string) ([][]byte, error) {
	files, err := filepath.Glob(filepath.Join(dir, "checkpoint-*"))
	if err != nil {
		return nil, err
	}
	var out [][]byte
	for _, f := range files {
		st, err := os.Stat(f)
		if err != nil || st.Size() > MaxNoteBytes {
			return nil, fmt.Errorf("read checkpoint copy %s: unreadable or too large", f)
		}
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}
