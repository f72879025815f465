package outbound

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Defaults of Options.
const (
	DefaultTimeout    = 10 * time.Second
	DefaultAttempts   = 3
	DefaultBackoff    = 250 * time.Millisecond
	DefaultMaxBackoff = 5 * time.Second
	// MaxErrorBody is how much of a refusing destination's answer is kept
	// in the error.
	MaxErrorBody = 512
)

// Options configure a Client. Zero values take the defaults.
type Options struct {
	Timeout    time.Duration // per attempt
	Attempts   int           // in all, first one included
	Backoff    time.Duration // before the second attempt, doubled after each
	MaxBackoff time.Duration
	RootCAs    *x509.CertPool // nil: the system's
}

// Client posts to outside destinations.
type Client struct {
	http                *http.Client
	timeout             time.Duration
	attempts            int
	backoff, maxBackoff time.Duration
	sleep               func(context.Context, time.Duration) error
}

// StatusError is a destination's refusal: a status other than 2xx.
type StatusError struct {
	Status int
	Body   string // the start of its answer
}

func (e *StatusError) Error() string {
	if e.Body == "" {
		return "HTTP " + strconv.Itoa(e.Status)
	}
	return fmt.Sprintf("HTTP %d: %s", e.Status, e.Body)
}

// New returns a client with o's settings.
func New(o Options) *Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: o.RootCAs}
	t.Proxy = http.ProxyFromEnvironment
	c := &Client{
		http: &http.Client{Transport: t, CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}},
		timeout: o.Timeout, attempts: o.Attempts, backoff: o.Backoff, maxBackoff: o.MaxBackoff, sleep: sleep,
	}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	if c.attempts <= 0 {
		c.attempts = DefaultAttempts
	}
	if c.backoff <= 0 {
		c.backoff = DefaultBackoff
	}
	if c.maxBackoff <= 0 {
		c.maxBackoff = DefaultMaxBackoff
	}
	return c
}

var shared = sync.OnceValue(func() *Client { return New(Options{}) })

// Default is a client with the default options, for callers that were
// given none.
func Default() *Client { return shared() }

// Post sends body to url with header and contentType, retrying transient
// failures. It returns nil once the destination answered 2xx; otherwise the
// last attempt's error (a *StatusError when the destination refused).
func (c *Client) Post(ctx context.Context, url string, header http.Header, contentType string, body []byte) error {
	wait := c.backoff
	var err error
	for attempt := 1; ; attempt++ {
		var retryAfter time.Duration
		var retry bool
		retry, retryAfter, err = c.once(ctx, url, header, contentType, body)
		if err == nil || !retry || attempt >= c.attempts || ctx.Err() != nil {
			return err
		}
		if retryAfter > c.maxBackoff {
			// The destination asked for more patience than a retry here
			// has: give up now rather than call back early.
			return err
		}
		d := min(max(wait, retryAfter), c.maxBackoff)
		if serr := c.sleep(ctx, d); serr != nil {
			return errors.Join(err, serr)
		}
		wait = min(2*wait, c.maxBackoff)
	}
}

// once is one attempt: whether a failure is worth retrying, and how long
// the destination asked to wait.
func (c *Client) once(ctx context.Context, url string, header http.Header, contentType string, body []byte) (retry bool, after time.Duration, err error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return false, 0, err
	}
	for k, vs := range header {
		req.Header[http.CanonicalHeaderKey(k)] = vs
	}
	req.Header.Set("Content-Type", contentType)
	resp, err := c.http.Do(req)
	if err != nil {
		return true, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 == 2 {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // so the connection is reused
		return false, 0, nil
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, MaxErrorBody))
	serr := &StatusError{Status: resp.StatusCode, Body: string(bytes.ToValidUTF8(bytes.TrimSpace(b), []byte("?")))}
	switch s := resp.StatusCode; {
	case s == http.StatusRequestTimeout, s == http.StatusTooEarly, s == http.StatusTooManyRequests, s >= 500:
		ra := resp.Header.Get("Retry-After")
		if secs, err := strconv.Atoi(ra); err == nil && secs > 0 {
			after = time.Duration(secs) * time.Second
		} else if at, err := http.ParseTime(ra); err == nil {
			after = max(time.Until(at), 0)
		}
		return true, after, serr
	}
	return false, 0, serr
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
