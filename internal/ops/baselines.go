package ops

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/detect"
	"github.com/portcullis-dev/portcullis/internal/reason"
	"github.com/portcullis-dev/portcullis/internal/store"
)

// Baselines returns the learned baselines the gateway saved last (it saves
// every detection.learning.sync_interval), and when.
func (o *Ops) Baselines(ctx context.Context) (*detect.Snapshot, time.Time, error) {
	_, body, saved, err := o.st.Baselines(ctx)
	if errors.Is(err, store.ErrNotFound) {
		return nil, time.Time{}, errors.New("no learned baselines saved yet (is detection.learning on, and has the gateway run?)")
	}
	if err != nil {
		return nil, time.Time{}, err
	}
	s, err := detect.ParseSnapshot(body)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("the stored baselines: %w", err)
	}
	return s, saved, nil
}

// RestoreBaselines replaces the learned baselines with an exported
// snapshot (validated first), audited in by's name; a running gateway
// loads it at its next sync.
func (o *Ops) RestoreBaselines(ctx context.Context, doc []byte, by string) (*detect.Snapshot, error) {
	if err := attributed(by); err != nil {
		return nil, err
	}
	s, err := detect.ParseSnapshot(doc)
	if err != nil {
		return nil, err
	}
	body, err := json.Marshal(s) // normalised: what the gateway saves
	if err != nil {
		return nil, err
	}
	e := audit.New(audit.TypeBaseline, audit.OutcomeInfo, reason.BaselineRestored, time.Now(), audit.Subject{})
	e.Detail = fmt.Sprintf("by %s: the snapshot of %s, %d profiles, sha256 %x", by, s.Taken.UTC().Format(time.RFC3339), len(s.Profiles), sha256.Sum256(doc))
	if err := audit.WriteNow(ctx, o.st, e); err != nil {
		return nil, err
	}
	if _, err := o.st.RestoreBaselines(ctx, body); err != nil {
		return nil, err
	}
	return s, nil
}
