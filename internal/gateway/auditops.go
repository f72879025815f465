package gateway

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/reason"
	"github.com/portcullis-dev/portcullis/internal/store"
)

// Checkpoint signs a checkpoint of the log in cfg's data directory now
// (`portcullis audit checkpoint`), beside or without a running gateway.
func Checkpoint(ctx context.Context, cfg *config.Config) (audit.Head, error) {
	st, err := store.Open(filepath.Join(DataDir(cfg), StoreFile))
	if err != nil {
		return audit.Head{}, err
	}
	defer st.Close()
	cp, err := newCheckpointer(cfg, DataDir(cfg), st, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return audit.Head{}, err
	}
	return cp.Checkpoint(ctx)
}

// Prune removes the bodies of events older than before, records that it did
// (the pruning is itself an event), and signs a checkpoint.
func Prune(ctx context.Context, cfg *config.Config, before time.Time) (int64, error) {
	st, err := store.Open(filepath.Join(DataDir(cfg), StoreFile))
	if err != nil {
		return 0, err
	}
	defer st.Close()
	n, err := st.PruneBodies(ctx, before)
	if err != nil {
		return 0, err
	}
	e := audit.New(audit.TypeRetention, audit.OutcomeInfo, reason.BodiesPruned, time.Now(), audit.Subject{})
	e.Detail = "pruned the bodies of events before " + before.UTC().Format(time.RFC3339)
	if err := audit.WriteNow(ctx, st, e); err != nil {
		return n, err
	}
	cp, err := newCheckpointer(cfg, DataDir(cfg), st, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return n, err
	}
	_, err = cp.Checkpoint(ctx)
	return n, err
}
