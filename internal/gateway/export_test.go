package gateway

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/portcullis-dev/portcullis/internal/audit"
)

// received collects OCSF events by their audit sequence number.
type received struct {
	mu   sync.Mutex
	seqs map[int64]map[string]any
}

func (r *received) add(o map[string]any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	md, _ := o["metadata"].(map[string]any)
	seq, _ := md["uid"].(float64)
	r.seqs[int64(seq)] = o
}

func (r *received) has(seq int64) (map[string]any, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	o, ok := r.seqs[seq]
	return o, ok
}

func newReceived() *received { return &received{seqs: map[int64]map[string]any{}} }

// syslogReceiver accepts RFC 6587 octet-counted RFC 5424 messages, over
// TLS when tc is set.
func syslogReceiver(t *testing.T, into *received, tc *tls.Config) string {
	var ln net.Listener
	var err error
	if tc != nil {
		ln, err = tls.Listen("tcp", "127.0.0.1:0", tc)
	} else {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					n, err := br.ReadString(' ')
					if err != nil {
						return
					}
					size, err := strconv.Atoi(strings.TrimSpace(n))
					if err != nil || size > 1<<20 {
						t.Errorf("bad frame length %q", n)
						return
					}
					msg := make([]byte, size)
					if _, err := io.ReadFull(br, msg); err != nil {
						return
					}
					if !strings.HasPrefix(string(msg), "<") || !strings.Contains(string(msg), ">1 ") {
						t.Errorf("not RFC 5424: %.80s", msg)
					}
					i := strings.Index(string(msg), "] {")
					var o map[string]any
					if err := json.Unmarshal(msg[i+2:], &o); err != nil {
						t.Errorf("syslog body: %v", err)
						continue
					}
					into.add(o)
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// selfSigned returns a TLS server config for 127.0.0.1 and its CA as PEM.
func selfSigned(t *testing.T) (*tls.Config, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "syslog.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	kb, _ := x509.MarshalECPrivateKey(key)
	pair, err := tls.X509KeyPair(certPEM, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}))
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}, certPEM
}

func TestAuditExportToFileWebhookSyslogAndOTLP(t *testing.T) {
	t.Parallel()
	webhook, syslog, syslogTLS, otlp := newReceived(), newReceived(), newReceived(), newReceived()
	serverTLS, caPEM := selfSigned(t)
	var failures int
	var mu sync.Mutex
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		fail := failures < 2 // the receiver is down at first: nothing may be lost
		failures++
		mu.Unlock()
		if fail {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		if r.Header.Get("Authorization") != "Bearer hook-secret" {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		var batch []map[string]any
		json.NewDecoder(r.Body).Decode(&batch)
		for _, o := range batch {
			webhook.add(o)
		}
	}))
	t.Cleanup(hook.Close)
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/logs" {
			http.NotFound(w, r)
			return
		}
		var req struct {
			ResourceLogs []struct {
				ScopeLogs []struct {
					LogRecords []struct {
						Body struct{ StringValue string }
					}
				}
			}
		}
		json.NewDecoder(r.Body).Decode(&req)
		for _, rl := range req.ResourceLogs {
			for _, sl := range rl.ScopeLogs {
				for _, lr := range sl.LogRecords {
					var o map[string]any
					json.Unmarshal([]byte(lr.Body.StringValue), &o)
					otlp.add(o)
				}
			}
		}
	}))
	t.Cleanup(collector.Close)
	os.Setenv("PORTCULLIS_TEST_HOOK_AUTH", "Bearer hook-secret")
	h := startGateway(t, demoConfig+fmt.Sprintf(`
audit:
  export:
    - {name: file, file: {path: DIR/ocsf.jsonl}}
    - {name: hook, webhook: {url: %q, headers: {Authorization: {from_env: PORTCULLIS_TEST_HOOK_AUTH}}}}
    - {name: siem, syslog: {address: %q}}
    - {name: siem-tls, syslog: {address: %q, tls: true, ca_file: ca.pem}}
    - {name: otel, otlp: {url: %q}}
`, hook.URL, syslogReceiver(t, syslog, nil), syslogReceiver(t, syslogTLS, serverTLS), collector.URL),
		map[string]string{"policy.cedar": demoPolicy, "ca.pem": string(caPEM)})

	s := h.mustConnect("mailer")
	ctx := context.Background()
	s.CallTool(ctx, &mcp.CallToolParams{Name: "demo__list_files", Arguments: map[string]any{}})
	s.CallTool(ctx, &mcp.CallToolParams{Name: "demo__send_message", Arguments: map[string]any{"to": "x@evil.test", "body": "b"}})
	var want []int64
	for _, e := range h.events() {
		if e.Type == "decision" && e.Action == "call_tool" {
			want = append(want, e.Seq)
		}
	}
	if len(want) != 2 {
		t.Fatalf("decisions: %v", want)
	}
	fileRecv := newReceived()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if b, err := os.ReadFile(filepath.Join(h.dir, "ocsf.jsonl")); err == nil {
			for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
				var o map[string]any
				if json.Unmarshal([]byte(line), &o) == nil {
					fileRecv.add(o)
				}
			}
		}
		done := true
		for _, r := range []*received{fileRecv, webhook, syslog, syslogTLS, otlp} {
			for _, seq := range want {
				if _, ok := r.has(seq); !ok {
					done = false
				}
			}
		}
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not every sink received both decisions (file %d, webhook %d, syslog %d, syslog/TLS %d, otlp %d)",
				len(fileRecv.seqs), len(webhook.seqs), len(syslog.seqs), len(syslogTLS.seqs), len(otlp.seqs))
		}
		time.Sleep(100 * time.Millisecond)
	}
	deny, _ := syslog.has(want[1])
	if deny["class_uid"] != float64(6003) || deny["status"] != "Failure" || deny["status_detail"] != "forbidden_by_policy" {
		t.Errorf("OCSF of a denial = %v", deny)
	}
	actor, _ := deny["actor"].(map[string]any)
	if user, _ := actor["user"].(map[string]any); user["name"] != "mailer" {
		t.Errorf("OCSF actor = %v", actor)
	}
	b, _ := os.ReadFile(filepath.Join(h.dir, "ocsf.jsonl"))
	if strings.Contains(string(b), "hook-secret") {
		t.Error("webhook secret leaked into exported events")
	}
}

func TestReplayUnderRecordedAndCurrentPolicy(t *testing.T) {
	t.Parallel()
	h := startDemo(t)
	s := h.mustConnect("mailer")
	long := strings.Repeat("confidential text ", 20)
	s.CallTool(context.Background(), &mcp.CallToolParams{Name: "demo__send_message", Arguments: map[string]any{"to": "x@evil.test", "body": long}})
	e := h.findEvent(func(e *audit.Event) bool { return e.Code == "forbidden_by_policy" })
	if e == nil || e.Input == nil || e.Input.Redactions != 1 || strings.Contains(string(e.Input.Arguments), long) {
		t.Fatalf("decision event input = %+v", e)
	}
	h.stop()
	r, err := cli(t, h.cfg).ReplayDecision(context.Background(), e.Seq)
	if err != nil {
		t.Fatal(err)
	}
	if r.Recorded.Allow || r.Recorded.Code != "forbidden_by_policy" || r.Recorded.Version != e.PolicyVersion {
		t.Errorf("recorded replay = %+v", r.Recorded)
	}
	// The operator drops the domain rule: the same request would now pass.
	os.WriteFile(filepath.Join(h.dir, "policy.cedar"), []byte(strings.Replace(demoPolicy, "forbid (principal, action == Action::\"call_tool\", resource == Tool::\"demo__send_message\")", "forbid (principal, action == Action::\"call_tool\", resource == Tool::\"demo__no_such_tool\")", 1)), 0o600)
	r, err = cli(t, h.cfg).ReplayDecision(context.Background(), e.Seq)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Current.Allow || r.Recorded.Allow || r.Current.Version == r.Recorded.Version {
		t.Errorf("current %+v recorded %+v", r.Current, r.Recorded)
	}
}

func TestSpansAreExportedWithTheAuditTraceID(t *testing.T) {
	t.Parallel()
	type span struct {
		TraceID, SpanID, ParentSpanID, Name string
		Attributes                          []struct {
			Key   string
			Value struct{ StringValue string }
		}
	}
	attr := func(s span, k string) string {
		for _, a := range s.Attributes {
			if a.Key == k {
				return a.Value.StringValue
			}
		}
		return ""
	}
	var mu sync.Mutex
	var spans []span
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			ResourceSpans []struct{ ScopeSpans []struct{ Spans []span } }
		}
		json.NewDecoder(r.Body).Decode(&req)
		mu.Lock()
		for _, rs := range req.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				spans = append(spans, ss.Spans...)
			}
		}
		mu.Unlock()
	}))
	t.Cleanup(collector.Close)
	h := startGateway(t, demoConfig+fmt.Sprintf("telemetry: {otlp: {url: %q}}\n", collector.URL), map[string]string{"policy.cedar": demoPolicy})
	const traceID = "0af7651916cd43dd8448eb211c80319c"
	resp, _ := h.post(h.token("reader", time.Minute), `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}`, nil)
	sid := resp.Header.Get("Mcp-Session-Id")
	hdr := map[string]string{"Mcp-Session-Id": sid, "Mcp-Protocol-Version": "2025-06-18", "traceparent": "00-" + traceID + "-b7ad6b7169203331-01"}
	h.post(h.token("reader", time.Minute), `{"jsonrpc":"2.0","method":"notifications/initialized"}`, hdr)
	h.post(h.token("reader", time.Minute), `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"demo__list_files","arguments":{}}}`, hdr)
	h.stop() // flushes the spans
	names := map[string]span{}
	mu.Lock()
	for _, s := range spans {
		if s.TraceID == traceID {
			names[s.Name] = s
		}
	}
	mu.Unlock()
	// The request's span, a span per pipeline stage under it, and the
	// upstream call under the relay stage.
	for _, want := range []string{"mcp tools/call", "admit", "resolve", "decide", "policy.decide", "commit", "audit.record", "relay", "upstream demo", "screen_result", "reply"} {
		if _, ok := names[want]; !ok {
			t.Errorf("no %q span in trace %s (got %v)", want, traceID, names)
		}
	}
	root, relay, up := names["mcp tools/call"], names["relay"], names["upstream demo"]
	if relay.ParentSpanID != root.SpanID || up.ParentSpanID != relay.SpanID {
		t.Errorf("spans: relay's parent %q (root %q), upstream's parent %q (relay %q)", relay.ParentSpanID, root.SpanID, up.ParentSpanID, relay.SpanID)
	}
	// The caller's span is the parent of the gateway's: the trace does not
	// break at the gateway.
	if root.ParentSpanID != "b7ad6b7169203331" {
		t.Errorf("the request's span has parent %q, want the caller's b7ad6b7169203331", root.ParentSpanID)
	}
	if d := names["policy.decide"]; attr(d, "portcullis.decision") != "allow" || attr(d, "portcullis.policy_version") == "" {
		t.Errorf("policy.decide attributes %+v", d.Attributes)
	}
	if e := h.findEvent(func(e *audit.Event) bool { return e.Target == "demo__list_files" }); e == nil || e.TraceID != traceID {
		t.Errorf("decision event trace = %+v", e)
	}
}
