package ops

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/outbound"
	"github.com/portcullis-dev/portcullis/internal/reason"
	"github.com/portcullis-dev/portcullis/internal/store"
)

// Checkpoint signs a checkpoint of the log in the data directory now
// (`portcullis audit checkpoint`), beside or without a running gateway.
func (o *Ops) Checkpoint(ctx context.Context) (audit.Head, error) {
	st := o.st
	cp, err := NewCheckpointer(o.cfg, o.dir, st, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return audit.Head{}, err
	}
	return cp.Checkpoint(ctx)
}

// Prune removes the bodies of events older than before, records that it did
// (the pruning is itself an event), and signs a checkpoint.
func (o *Ops) Prune(ctx context.Context, before time.Time) (int64, error) {
	st := o.st
	n, err := st.PruneBodies(ctx, before)
	if err != nil {
		return 0, err
	}
	e := audit.New(audit.TypeRetention, audit.OutcomeInfo, reason.BodiesPruned, time.Now(), audit.Subject{})
	e.Detail = "pruned the bodies of events before " + before.UTC().Format(time.RFC3339)
	if err := audit.WriteNow(ctx, st, e); err != nil {
		return n, err
	}
	cp, err := NewCheckpointer(o.cfg, o.dir, st, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return n, err
	}
	_, err = cp.Checkpoint(ctx)
	return n, err
}

// NewCheckpointer signs checkpoints of the log in st; out posts them to the
// configured witness (nil: outbound.Default()).
func NewCheckpointer(cfg *config.Config, dataDir string, st *store.DB, out *outbound.Client, log *slog.Logger) (*audit.Checkpointer, error) {
	signer, _, err := audit.LoadOrCreateLogKey(filepath.Join(dataDir, "keys"), cfg.Audit.Origin)
	if err != nil {
		return nil, err
	}
	copies := make([]string, len(cfg.Audit.CheckpointCopies))
	for i, d := range cfg.Audit.CheckpointCopies {
		copies[i] = cfg.Path(d)
	}
	cp := &audit.Checkpointer{
		Store: st, Signer: signer, Origin: cfg.Audit.Origin, Copies: copies, URL: cfg.Audit.CheckpointURL,
		Interval: cfg.Audit.CheckpointInterval.D(), Log: log,
	}
	if out != nil {
		cp.Client = out // a nil *Client in the interface would not read as nil
	}
	return cp, nil
}
