package audit

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/portcullis-dev/portcullis/internal/outbound"
)

// FileSink appends OCSF events as JSON lines to a file, syncing each batch.
type FileSink struct {
	SinkName string
	Path     string
}

var _ Sink = (*FileSink)(nil)

// Name implements Sink.
func (f *FileSink) Name() string { return f.SinkName }

// Send implements Sink.
func (f *FileSink) Send(_ context.Context, events []*Event) error {
	fh, err := os.OpenFile(f.Path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("file sink: %w", err)
	}
	w := bufio.NewWriter(fh)
	enc := json.NewEncoder(w)
	for _, e := range events {
		if err := enc.Encode(OCSF(e)); err != nil {
			fh.Close()
			return fmt.Errorf("file sink: %w", err)
		}
	}
	if err := w.Flush(); err != nil {
		fh.Close()
		return fmt.Errorf("file sink: %w", err)
	}
	if err := fh.Sync(); err != nil {
		fh.Close()
		return fmt.Errorf("file sink: %w", err)
	}
	return fh.Close()
}

// WebhookSink POSTs each batch as a JSON array of OCSF events.
type WebhookSink struct {
	SinkName string
	URL      string
	Header   http.Header // may carry secrets: never logged
	Client   Poster      // nil: outbound.Default()
}

var _ Sink = (*WebhookSink)(nil)

// Name implements Sink.
func (h *WebhookSink) Name() string { return h.SinkName }

// Send implements Sink.
func (h *WebhookSink) Send(ctx context.Context, events []*Event) error {
	batch := make([]map[string]any, len(events))
	for i, e := range events {
		batch[i] = OCSF(e)
	}
	return postJSON(ctx, h.Client, h.URL, h.Header, batch, "webhook sink")
}

// Poster sends a request body to an outside destination (the gateway's
// outbound client: timeouts, retries, no redirects).
type Poster interface {
	Post(ctx context.Context, url string, header http.Header, contentType string, body []byte) error
}

var _ Poster = (*outbound.Client)(nil)

func postJSON(ctx context.Context, c Poster, url string, h http.Header, v any, what string) error {
	body, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if c == nil {
		c = outbound.Default()
	}
	if err := c.Post(ctx, url, h, "application/json", body); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// SyslogSink sends each event as an RFC 5424 message, octet-counted
// (RFC 6587) over TCP or TLS (RFC 5425), with the OCSF JSON as the message.
type SyslogSink struct {
	SinkName string
	Address  string
	TLS      *tls.Config // nil: plain TCP
	Hostname string

	mu   sync.Mutex
	conn net.Conn
}

var _ Sink = (*SyslogSink)(nil)

// Name implements Sink.
func (s *SyslogSink) Name() string { return s.SinkName }

// syslogFacility is "log audit" (13).
const syslogFacility = 13

// Send implements Sink. A write error drops the connection; the batch is
// retried whole (a receiver may see an event twice, never zero times).
func (s *SyslogSink) Send(ctx context.Context, events []*Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == nil {
		d := &net.Dialer{Timeout: 10 * time.Second}
		var err error
		if s.TLS != nil {
			s.conn, err = tls.DialWithDialer(d, "tcp", s.Address, s.TLS)
		} else {
			s.conn, err = d.DialContext(ctx, "tcp", s.Address)
		}
		if err != nil {
			return fmt.Errorf("syslog sink: %w", err)
		}
	}
	var buf bytes.Buffer
	for _, e := range events {
		msg, err := s.format(e)
		if err != nil {
			return err
		}
		buf.WriteString(strconv.Itoa(len(msg)))
		buf.WriteByte(' ')
		buf.Write(msg)
	}
	s.conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
	if _, err := s.conn.Write(buf.Bytes()); err != nil {
		s.conn.Close()
		s.conn = nil
		return fmt.Errorf("syslog sink: %w", err)
	}
	return nil
}

func (s *SyslogSink) format(e *Event) ([]byte, error) {
	sev := 6 // informational
	if e.Outcome == OutcomeDeny || e.Outcome == OutcomeError {
		sev = 4 // warning
	}
	body, err := json.Marshal(OCSF(e))
	if err != nil {
		return nil, fmt.Errorf("syslog sink: %w", err)
	}
	host := s.Hostname
	if host == "" {
		host = "-"
	}
	msgid := e.Type
	if msgid == "" {
		msgid = "-"
	}
	// <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD MSG
	hdr := fmt.Sprintf("<%d>1 %s %s portcullis %d %s [portcullis@32473 seq=\"%d\"] ",
		syslogFacility*8+sev, e.Time.UTC().Format(time.RFC3339Nano), host, os.Getpid(), msgid, e.Seq)
	return append([]byte(hdr), body...), nil
}

// OTLPSink sends events as OpenTelemetry log records over OTLP/HTTP (JSON
// encoding) to an OTLP endpoint (…/v1/logs).
type OTLPSink struct {
	SinkName string
	Endpoint string // base URL, e.g. http://collector:4318
	Header   http.Header
	Client   Poster // nil: outbound.Default()
}

var _ Sink = (*OTLPSink)(nil)

// Name implements Sink.
func (o *OTLPSink) Name() string { return o.SinkName }

// Send implements Sink.
func (o *OTLPSink) Send(ctx context.Context, events []*Event) error {
	records := make([]map[string]any, len(events))
	for i, e := range events {
		body, err := json.Marshal(OCSF(e))
		if err != nil {
			return fmt.Errorf("otlp sink: %w", err)
		}
		sevNum, sevText := 9, "INFO"
		if e.Outcome == OutcomeDeny || e.Outcome == OutcomeError {
			sevNum, sevText = 13, "WARN"
		}
		r := map[string]any{
			"timeUnixNano":   strconv.FormatInt(e.Time.UnixNano(), 10),
			"severityNumber": sevNum,
			"severityText":   sevText,
			"body":           map[string]any{"stringValue": string(body)},
			"attributes": []map[string]any{
				otlpAttr("portcullis.event.type", string(e.Type)), otlpAttr("portcullis.event.seq", strconv.FormatInt(e.Seq, 10)),
				otlpAttr("portcullis.outcome", string(e.Outcome)), otlpAttr("portcullis.agent", e.Agent),
			},
		}
		if len(e.TraceID) == 32 {
			r["traceId"] = e.TraceID
		}
		records[i] = r
	}
	req := map[string]any{"resourceLogs": []map[string]any{{
		"resource":  map[string]any{"attributes": []map[string]any{otlpAttr("service.name", "portcullis")}},
		"scopeLogs": []map[string]any{{"scope": map[string]any{"name": "portcullis.audit"}, "logRecords": records}},
	}}}
	return postJSON(ctx, o.Client, o.Endpoint+"/v1/logs", o.Header, req, "otlp sink")
}

func otlpAttr(k, v string) map[string]any {
	return map[string]any{"key": k, "value": map[string]any{"stringValue": v}}
}
