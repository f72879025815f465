package telemetry

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/portcullis-dev/portcullis/internal/outbound"
)

// Span kinds (OTLP numbering).
const (
	KindInternal = 1
	KindServer   = 2
	KindClient   = 3
)

// Export tuning.
const (
	queueSize   = 4096
	batchSize   = 512
	flushPeriod = time.Second
)

// Tracer collects spans and exports them.
type Tracer struct {
	endpoint string
	header   http.Header
	client   Poster
	log      *slog.Logger
	queue    chan *Span
	dropped  atomic.Int64
}

// New returns a Tracer exporting to endpoint (an OTLP/HTTP base URL such as
// http://collector:4318). Run must be running for spans to leave.
// client sends the batches (nil: outbound.Default()).
func New(endpoint string, header http.Header, client Poster, log *slog.Logger) *Tracer {
	if client == nil {
		client = outbound.Default()
	}
	return &Tracer{endpoint: endpoint, header: header, client: client, log: log, queue: make(chan *Span, queueSize)}
}

// Poster sends a request body to an outside destination (the gateway's
// outbound client: timeouts, retries, no redirects).
type Poster interface {
	Post(ctx context.Context, url string, header http.Header, contentType string, body []byte) error
}

// Dropped is the number of spans dropped because the queue was full.
func (t *Tracer) Dropped() int64 {
	if t == nil {
		return 0
	}
	return t.dropped.Load()
}

// Span is one timed stage.
type Span struct {
	t        *Tracer
	TraceID  string
	SpanID   string
	ParentID string
	Name     string
	Kind     int
	Start    time.Time
	End      time.Time
	Attrs    map[string]string
	Err      string
}

type spanKey struct{}

// Start begins a span named name in trace traceID (32 hex digits), as a
// child of the span in ctx if any. The returned context carries the span.
func (t *Tracer) Start(ctx context.Context, name string, kind int, traceID string) (context.Context, *Span) {
	if t == nil {
		return ctx, nil
	}
	s := &Span{t: t, TraceID: traceID, SpanID: newID(8), Name: name, Kind: kind, Start: time.Now()}
	if parent, ok := ctx.Value(spanKey{}).(*Span); ok && parent != nil && parent.TraceID == traceID {
		s.ParentID = parent.SpanID
	}
	return context.WithValue(ctx, spanKey{}, s), s
}

// ID returns the span's ID ("" for a nil span).
func (s *Span) ID() string {
	if s == nil {
		return ""
	}
	return s.SpanID
}

// Set adds an attribute.
func (s *Span) Set(k, v string) {
	if s == nil {
		return
	}
	if s.Attrs == nil {
		s.Attrs = map[string]string{}
	}
	s.Attrs[k] = v
}

// Finish ends the span; a non-nil err marks it failed.
func (s *Span) Finish(err error) {
	if s == nil {
		return
	}
	s.End = time.Now()
	if err != nil {
		s.Err = err.Error()
	}
	select {
	case s.t.queue <- s:
	default:
		s.t.dropped.Add(1)
	}
}

func newID(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Run exports batches until ctx ends, then flushes what is queued.
func (t *Tracer) Run(ctx context.Context) error {
	if t == nil {
		return nil
	}
	tick := time.NewTicker(flushPeriod)
	defer tick.Stop()
	var batch []*Span
	flush := func(ctx context.Context) {
		if len(batch) == 0 {
			return
		}
		if err := t.export(ctx, batch); err != nil {
			t.log.Warn("span export failed; spans dropped", "spans", len(batch), "err", err)
			t.dropped.Add(int64(len(batch)))
		}
		batch = batch[:0]
	}
	for {
		select {
		case s := <-t.queue:
			batch = append(batch, s)
			if len(batch) >= batchSize {
				flush(ctx)
			}
		case <-tick.C:
			flush(ctx)
		case <-ctx.Done():
			for {
				select {
				case s := <-t.queue:
					batch = append(batch, s)
				default:
					fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					flush(fctx)
					cancel()
					return nil
				}
			}
		}
	}
}

func (t *Tracer) export(ctx context.Context, spans []*Span) error {
	out := make([]map[string]any, len(spans))
	for i, s := range spans {
		attrs := make([]map[string]any, 0, len(s.Attrs))
		for k, v := range s.Attrs {
			attrs = append(attrs, map[string]any{"key": k, "value": map[string]any{"stringValue": v}})
		}
		status := map[string]any{"code": 1}
		if s.Err != "" {
			status = map[string]any{"code": 2, "message": s.Err}
		}
		o := map[string]any{
			"traceId": s.TraceID, "spanId": s.SpanID, "name": s.Name, "kind": s.Kind,
			"startTimeUnixNano": strconv.FormatInt(s.Start.UnixNano(), 10),
			"endTimeUnixNano":   strconv.FormatInt(s.End.UnixNano(), 10),
			"attributes":        attrs, "status": status,
		}
		if s.ParentID != "" {
			o["parentSpanId"] = s.ParentID
		}
		out[i] = o
	}
	body, err := json.Marshal(map[string]any{"resourceSpans": []map[string]any{{
		"resource": map[string]any{"attributes": []map[string]any{
			{"key": "service.name", "value": map[string]any{"stringValue": "portcullis"}},
		}},
		"scopeSpans": []map[string]any{{"scope": map[string]any{"name": "portcullis"}, "spans": out}},
	}}})
	if err != nil {
		return err
	}
	if err := t.client.Post(ctx, t.endpoint+"/v1/traces", t.header, "application/json", body); err != nil {
		return fmt.Errorf("otlp traces: %w", err)
	}
	return nil
}
