package authserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/portcullis-dev/portcullis/internal/netguard"
)

// Client ID metadata documents (the MCP authorization specification,
// draft-ietf-oauth-client-id-metadata-document): a client names itself by
// an https URL where its metadata is published; the server fetches and
// checks that document instead of a registration.
const (
	cimdMaxBytes = 5 << 10
	cimdTimeout  = 5 * time.Second
	cimdCacheTTL = 5 * time.Minute
	cimdMaxCache = 256
)

// isCIMD reports whether a client ID is a metadata document's URL.
func isCIMD(id string) bool {
	u, err := url.Parse(id)
	return err == nil && u.Scheme == "https" && u.Host != "" && u.Path != "" && u.Path != "/" && u.Fragment == "" && u.User == nil
}

type cimdEntry struct {
	c       *client
	err     error
	fetched time.Time
}

// cimd fetches and caches metadata documents (refusals too, briefly).
type cimd struct {
	s    *Server
	http *http.Client

	mu    sync.Mutex
	cache map[string]cimdEntry
}

// publicOnly is the client for documents: https, no redirects, bounded,
// never to loopback, private, link-local or unspecified addresses (the
// URL is the client's choice, the fetch is the server's).
func publicOnly() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	d := &net.Dialer{Timeout: cimdTimeout, Control: netguard.Control(false, "client metadata documents are fetched from public addresses only")}
	t.DialContext = d.DialContext
	return &http.Client{Timeout: cimdTimeout, Transport: t,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func (m *cimd) get(ctx context.Context, id string) (*client, error) {
	now := m.s.now()
	m.mu.Lock()
	if e, ok := m.cache[id]; ok && now.Sub(e.fetched) < cimdCacheTTL {
		m.mu.Unlock()
		return e.c, e.err
	}
	m.mu.Unlock()
	c, err := m.fetch(ctx, id)
	m.mu.Lock()
	if len(m.cache) >= cimdMaxCache {
		clear(m.cache)
	}
	m.cache[id] = cimdEntry{c: c, err: err, fetched: now}
	m.mu.Unlock()
	if err == nil {
		m.s.o.Event(Event{Kind: EventClientRegistered, Client: id, Detail: fmt.Sprintf("client ID metadata document: %q, redirects %v", c.name, c.redirects)})
	}
	return c, err
}

func (m *cimd) fetch(ctx context.Context, id string) (*client, error) {
	ctx, cancel := context.WithTimeout(ctx, cimdTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, id, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := m.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("client metadata document: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("client metadata document: HTTP %d", resp.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, cimdMaxBytes+1))
	if err != nil || len(b) > cimdMaxBytes {
		return nil, errors.New("client metadata document: unreadable or over 5 KiB")
	}
	var doc struct {
		ClientID string `json:"client_id"`
		registration
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, errors.New("client metadata document: not JSON")
	}
	if doc.ClientID != id {
		return nil, errors.New("client metadata document: its client_id is not its URL")
	}
	c, err := m.s.newClient(doc.registration)
	if err != nil {
		return nil, fmt.Errorf("client metadata document: %w", err)
	}
	c.id = id
	if u, err := url.Parse(id); err == nil {
		c.name += " (" + strings.ToLower(u.Host) + ")" // who published it: the name alone is the client's word
	}
	return c, nil
}
