package outbound

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// testClient records the waits between attempts instead of sleeping.
func testClient(o Options) (*Client, *[]time.Duration) {
	c := New(o)
	var waits []time.Duration
	c.sleep = func(_ context.Context, d time.Duration) error { waits = append(waits, d); return nil }
	return c, &waits
}

func TestPostRetriesTransientFailures(t *testing.T) {
	t.Parallel()
	var n atomic.Int32
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if string(b) != "hello" || r.Header.Get("Content-Type") != "text/plain" || r.Header.Get("X-Key") != "k" {
			t.Errorf("request: %q %v", b, r.Header)
		}
		switch n.Add(1) {
		case 1:
			w.WriteHeader(http.StatusServiceUnavailable)
		case 2:
			w.Header().Set("Retry-After", "2")
			w.WriteHeader(http.StatusTooManyRequests)
		}
	}))
	defer ts.Close()
	c, waits := testClient(Options{Backoff: 100 * time.Millisecond})
	if err := c.Post(context.Background(), ts.URL, http.Header{"X-Key": {"k"}}, "text/plain", []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if n.Load() != 3 {
		t.Errorf("%d attempts, want 3", n.Load())
	}
	// The first wait is the backoff, the second the server's Retry-After.
	if len(*waits) != 2 || (*waits)[0] != 100*time.Millisecond || (*waits)[1] != 2*time.Second {
		t.Errorf("waits %v", *waits)
	}
}

func TestPostGivesUp(t *testing.T) {
	t.Parallel()
	var n atomic.Int32
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		http.Error(w, "overloaded", http.StatusBadGateway)
	}))
	defer ts.Close()
	c, waits := testClient(Options{Attempts: 4})
	err := c.Post(context.Background(), ts.URL, nil, "application/json", []byte("{}"))
	var se *StatusError
	if !errors.As(err, &se) || se.Status != http.StatusBadGateway || se.Body != "overloaded" {
		t.Fatalf("err %v", err)
	}
	if n.Load() != 4 {
		t.Errorf("%d attempts, want 4", n.Load())
	}
	for _, w := range *waits {
		if w > DefaultMaxBackoff {
			t.Errorf("waited %s, over the cap", w)
		}
	}
}

func TestPostDoesNotRetryRefusals(t *testing.T) {
	t.Parallel()
	var n atomic.Int32
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		w.WriteHeader(http.StatusUnauthorized)
	}))
	defer ts.Close()
	c, _ := testClient(Options{})
	var se *StatusError
	if err := c.Post(context.Background(), ts.URL, nil, "application/json", nil); !errors.As(err, &se) || se.Status != http.StatusUnauthorized {
		t.Fatalf("err %v", err)
	}
	if n.Load() != 1 {
		t.Errorf("%d attempts of a refused request", n.Load())
	}
}

// TestPostDoesNotFollowRedirects: credentials meant for a destination
// never reach wherever it redirects to.
func TestPostDoesNotFollowRedirects(t *testing.T) {
	t.Parallel()
	var leaked atomic.Bool
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { leaked.Store(true) }))
	defer elsewhere.Close()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.URL, http.StatusTemporaryRedirect)
	}))
	defer ts.Close()
	c, _ := testClient(Options{})
	var se *StatusError
	if err := c.Post(context.Background(), ts.URL, http.Header{"Authorization": {"Bearer s3cret"}}, "application/json", nil); !errors.As(err, &se) || se.Status != http.StatusTemporaryRedirect {
		t.Fatalf("err %v", err)
	}
	if leaked.Load() {
		t.Error("the redirect was followed")
	}
}

func TestPostRetriesNetworkErrorsAndStopsWithTheContext(t *testing.T) {
	t.Parallel()
	ts := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	url := ts.URL
	ts.Close() // connection refused from now on
	c, waits := testClient(Options{Attempts: 3})
	if err := c.Post(context.Background(), url, nil, "application/json", nil); err == nil || len(*waits) != 2 {
		t.Fatalf("err %v after %d waits", err, len(*waits))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	c2, waits2 := testClient(Options{Attempts: 3})
	if err := c2.Post(ctx, url, nil, "application/json", nil); err == nil || len(*waits2) != 0 {
		t.Fatalf("cancelled: err %v after %d waits", err, len(*waits2))
	}
}

// TestPostDoesNotCallBackEarly: a destination that asks to wait longer
// than a retry here would is not called again sooner.
func TestPostDoesNotCallBackEarly(t *testing.T) {
	t.Parallel()
	var n atomic.Int32
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		w.Header().Set("Retry-After", "3600")
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer ts.Close()
	c, waits := testClient(Options{Attempts: 4})
	var se *StatusError
	if err := c.Post(context.Background(), ts.URL, nil, "application/json", nil); !errors.As(err, &se) || se.Status != http.StatusServiceUnavailable {
		t.Fatalf("err %v", err)
	}
	if n.Load() != 1 || len(*waits) != 0 {
		t.Errorf("%d attempts, %d waits: want one attempt", n.Load(), len(*waits))
	}
}
