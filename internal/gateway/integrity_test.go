package gateway

import (
	"context"
	"database/sql"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/ops"
	"github.com/portcullis-dev/portcullis/internal/store"
)

// TestCorruptStoreIsRefused: a store with a damaged page of events opens,
// but the gateway refuses to serve on it and says why.
func TestCorruptStoreIsRefused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg, err := config.Parse([]byte("version: 1\ndata_dir: data\nagents: [{name: a}]\n"), dir)
	if err != nil {
		t.Fatal(err)
	}
	o, err := ops.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for range 300 {
		if _, _, err := o.IssueToken(context.Background(), "a", time.Minute, "test"); err != nil {
			t.Fatal(err)
		}
	}
	o.Close()
	path := filepath.Join(dir, "data", ops.StoreFile)
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	var root, pageSize int64
	db.QueryRow(`SELECT rootpage FROM sqlite_master WHERE name = 'events'`).Scan(&root)
	db.QueryRow(`PRAGMA page_size`).Scan(&pageSize)
	db.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`)
	db.Close()
	// A leaf of the events table (the pages after its root), scribbled over.
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	junk := []byte(strings.Repeat("\xa5", int(pageSize)))
	if _, err := f.WriteAt(junk, root*pageSize); err != nil {
		t.Fatal(err)
	}
	f.Close()

	g, err := New(cfg, Options{Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err == nil {
		g.store.Close()
	}
	if !errors.Is(err, store.ErrCorrupt) || !strings.Contains(err.Error(), "restore it from a backup") {
		t.Fatalf("New on a corrupt store: %v", err)
	}
}
