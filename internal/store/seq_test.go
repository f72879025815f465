package store_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/store"
)

func TestSeqSince(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if seq, err := st.SeqSince(ctx, time.Now()); err != nil || seq != 1 {
		t.Fatalf("empty log: %d %v", seq, err)
	}
	base := time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)
	var evs []*audit.Event
	for i := 0; i < 100; i++ { // one a minute
		evs = append(evs, audit.New(audit.TypeUpstream, audit.OutcomeInfo, "started", base.Add(time.Duration(i)*time.Minute), audit.Subject{}))
	}
	if err := audit.Append(ctx, st, evs); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		at   time.Time
		want int64
	}{{base.Add(-time.Hour), 1}, {base, 1}, {base.Add(30 * time.Second), 2}, {base.Add(42 * time.Minute), 43}, {base.Add(99 * time.Minute), 100}, {base.Add(2 * time.Hour), 101}} {
		if got, err := st.SeqSince(ctx, tc.at); err != nil || got != tc.want {
			t.Errorf("since %s: %d %v, want %d", tc.at, got, err, tc.want)
		}
	}
}
