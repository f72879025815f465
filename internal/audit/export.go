package audit

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/portcullis-dev/portcullis/internal/store"
)

// Sink receives committed audit events, in order, at least once.
type Sink interface {
	Name() string
	Send(ctx context.Context, events []*Event) error
}

// ExportStore is what the Exporter reads and where it keeps each sink's
// cursor.
type ExportStore interface {
	Events(ctx context.Context, q store.EventQuery) ([]store.EventRow, error)
	Cursor(ctx context.Context, name string) (int64, error)
	SetCursor(ctx context.Context, name string, seq int64) error
}

// Export tuning.
const (
	exportBatch      = 256
	exportIdle       = 500 * time.Millisecond
	exportMaxBackoff = 30 * time.Second
)

// Exporter streams the committed log to sinks. It reads from the durable
// log (up to what it has just made durable: durableSize) and
// advances a sink's cursor only after the sink accepted a batch, so
// a slow or failing sink makes its export lag, never lose an event: the
// backpressure lands on the export, not on agents' calls. A sink that keeps
// failing is retried with backoff, and its lag is reported.
type Exporter struct {
	Store ExportStore
	Sinks []Sink
	Log   *slog.Logger
	// OnLag, if set, is called with each sink's lag (events not yet sent).
	OnLag func(sink string, lag int64)
	// Durable, if set, makes the log durable so far and returns its size
	// then, or -1 to leave it to the store (Recorder.DurableSize: the
	// local journal's events may be readable before they are on disk).
	Durable func(ctx context.Context) (int64, error)
}

// Run exports until ctx ends.
func (x *Exporter) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, s := range x.Sinks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			x.run(ctx, s)
		}()
	}
	wg.Wait()
	return nil
}

func (x *Exporter) run(ctx context.Context, s Sink) {
	log := x.Log.With("sink", s.Name())
	backoff := time.Second
	for ctx.Err() == nil {
		sent, err := x.Step(ctx, s)
		switch {
		case err != nil:
			log.Error("audit export failed; retrying the same events", "err", err, "backoff", backoff)
			sleep(ctx, backoff)
			backoff = min(backoff*2, exportMaxBackoff)
		case sent == 0:
			backoff = time.Second
			sleep(ctx, exportIdle)
		default:
			backoff = time.Second
		}
	}
}

// Step sends the next batch after s's cursor and advances the cursor. It
// returns how many events were sent.
func (x *Exporter) Step(ctx context.Context, s Sink) (int, error) {
	cur, err := x.Store.Cursor(ctx, s.Name())
	if err != nil {
		return 0, err
	}
	upTo, err := x.durableSize(ctx)
	if err != nil {
		return 0, err
	}
	rows, err := x.Store.Events(ctx, store.EventQuery{AfterSeq: cur, Limit: exportBatch})
	if err != nil {
		return 0, err
	}
	for len(rows) > 0 && upTo >= 0 && rows[len(rows)-1].Seq > upTo {
		rows = rows[:len(rows)-1] // committed, not yet known to be on disk
	}
	if len(rows) == 0 {
		return 0, nil
	}
	events := make([]*Event, 0, len(rows))
	for _, r := range rows {
		e, err := Decode(r)
		if err != nil {
			return 0, err
		}
		events = append(events, e)
	}
	if err := s.Send(ctx, events); err != nil {
		return 0, err
	}
	last := rows[len(rows)-1].Seq
	if err := x.Store.SetCursor(ctx, s.Name(), last); err != nil {
		return 0, err
	}
	if x.OnLag != nil {
		x.OnLag(s.Name(), 0)
	}
	return len(rows), nil
}

// durableSize is how much of the log is known to be on disk, where
// events may be readable before their flush (the local journal's, by
// Durable; PostgreSQL's: the log's size read, then a flush that covers
// it); -1 where every commit is durable when it is readable. A sink never
// receives an event a crash could take back (and whose number it could
// give another).
func (x *Exporter) durableSize(ctx context.Context) (int64, error) {
	if x.Durable != nil {
		if n, err := x.Durable(ctx); err != nil || n >= 0 {
			return n, err
		}
	}
	a, ok := x.Store.(interface {
		AsyncLog() bool
		State(ctx context.Context) (store.LogState, error)
		SyncLog(ctx context.Context) error
	})
	if !ok || !a.AsyncLog() {
		return -1, nil
	}
	st, err := a.State(ctx)
	if err != nil {
		return 0, err
	}
	if err := a.SyncLog(ctx); err != nil {
		return 0, err
	}
	return st.Size, nil
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
