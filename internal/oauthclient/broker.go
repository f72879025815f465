package oauthclient

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/auth"

	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/netguard"
	"github.com/portcullis-dev/portcullis/internal/reason"
	"github.com/portcullis-dev/portcullis/internal/secret"
)

// CallbackPath is where authorization servers send people back to the
// gateway (on its public URL).
const CallbackPath = "/oauth/callback"

// Defaults and bounds.
const (
	DefaultFlowTTL = 10 * time.Minute // how long an authorization waits for its person
	requestTimeout = 10 * time.Second // one request to a metadata, registration or token endpoint
	callbackWait   = 30 * time.Second // the callback waits this long for the code's exchange
	maxPending     = 256              // users' authorization flows waiting at once
)

// Vault keeps the grants' tokens sealed.
type Vault interface {
	Put(ctx context.Context, name string, value []byte) error
	Get(ctx context.Context, name string) (secret.Value, error)
}

// Event is something to audit: an authorization asked for, obtained or
// failed (Code), for an upstream and a user ("" for the operator's grant).
type Event struct {
	Upstream, User string
	Code           reason.Code
	Detail         string
}

// Options configure a Broker.
type Options struct {
	// PublicURL is the gateway's origin as people's browsers reach it
	// (known once it listens); the redirect URI is PublicURL() +
	// CallbackPath.
	PublicURL func() string
	Vault     Vault
	// Resolve opens a configured value (the client secret).
	Resolve func(config.Value) (string, error)
	Log     *slog.Logger
	Event   func(Event)
	// Authorized is called after a grant obtained a token.
	Authorized func(Authorized)
	FlowTTL    time.Duration
	// HTTP, if set, replaces the guarded client (tests).
	HTTP *http.Client
}

// Broker holds the gateway's OAuth grants towards upstreams.
type Broker struct {
	o Options
	// http is for what the upstreams name: internet destinations only;
	// private also reaches loopback and private networks (for upstreams
	// there).
	http, private *http.Client

	mu     sync.Mutex
	grants map[grantKey]*Grant
	flows  map[string]*flow // waiting for their callback, by state
}

// grantKey names a grant: the upstream and the user's key ("" for the
// operator's grant).
type grantKey struct{ upstream, user string }

// Authorized says that a grant obtained its token: for which upstream and
// user (User is the user's key), through which flow (ID, "" with client
// credentials).
type Authorized struct {
	Upstream, User, ID string
	PerUser            bool
}

// New returns a broker.
func New(o Options) *Broker {
	if o.FlowTTL <= 0 {
		o.FlowTTL = DefaultFlowTTL
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Event == nil {
		o.Event = func(Event) {}
	}
	if o.PublicURL == nil {
		o.PublicURL = func() string { return "" }
	}
	if o.Authorized == nil {
		o.Authorized = func(Authorized) {}
	}
	b := &Broker{o: o, http: o.HTTP, private: o.HTTP, grants: map[grantKey]*Grant{}, flows: map[string]*flow{}}
	if b.http == nil {
		b.http, b.private = guardedClient(false), guardedClient(true)
	}
	return b
}

// RedirectURL is where the authorization server sends people back for
// upstream: one per upstream, so that a callback cannot be taken for
// another upstream's (mix-up).
func (b *Broker) RedirectURL(upstream string) string {
	return b.o.PublicURL() + CallbackPath + "/" + upstream
}

// Grant returns the grant that upstream (configured with srv) uses for a
// user (userKey qualifies the name by who vouched for it; userName is how
// events name them): the user's own when the upstream authorizes per
// user, else the operator's (the user is then ignored). Grants are made
// once and shared by every connection.
func (b *Broker) Grant(upstream string, srv *config.HTTPServer, userKey, userName string) (*Grant, error) {
	cfg := srv.OAuth
	if !cfg.PerUser {
		userKey, userName = "", ""
	}
	k := grantKey{upstream, userKey}
	b.mu.Lock()
	g := b.grants[k]
	b.mu.Unlock()
	if g != nil {
		return g, nil
	}
	g, err := b.newGrant(k, userName, srv)
	if err != nil {
		return nil, fmt.Errorf("upstream %s: oauth: %w", upstream, err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if prev := b.grants[k]; prev != nil {
		return prev, nil // made meanwhile
	}
	b.grants[k] = g
	return g, nil
}

// Pending is an authorization waiting for its person.
type Pending struct {
	Upstream string    `json:"upstream"`
	User     string    `json:"user,omitempty"`
	PerUser  bool      `json:"per_user"`
	ID       string    `json:"id"`
	URL      string    `json:"url"`
	Expires  time.Time `json:"expires"`
}

// Pending lists the authorizations waiting, oldest first; operator grants
// only unless users is set (a user's URL is theirs).
func (b *Broker) Pending(users bool) []Pending {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []Pending
	for _, f := range b.flows {
		if f.g.perUser && !users {
			continue
		}
		out = append(out, Pending{Upstream: f.g.upstream, User: f.g.userName, PerUser: f.g.perUser, ID: f.id, URL: f.url, Expires: f.expires})
	}
	slices.SortFunc(out, func(a, b Pending) int { return a.Expires.Compare(b.Expires) })
	return out
}

// register makes f wait for its callback. Users' flows are bounded (the
// operator's, one per upstream, are not: users cannot crowd them out).
func (b *Broker) register(f *flow) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if f.g.perUser {
		n := 0
		for _, o := range b.flows {
			if o.g.perUser {
				n++
			}
		}
		if n >= maxPending {
			return errors.New("too many users' authorizations waiting")
		}
	}
	b.flows[f.state] = f
	return nil
}

// take removes and returns the flow of upstream waiting with state
// (single use); a state presented at another upstream's callback is
// refused and stays.
func (b *Broker) take(state, upstream string) *flow {
	b.mu.Lock()
	defer b.mu.Unlock()
	f := b.flows[state]
	if f == nil || f.g.upstream != upstream {
		return nil
	}
	delete(b.flows, state)
	return f
}

func (b *Broker) forget(f *flow) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.flows[f.state] == f {
		delete(b.flows, f.state)
	}
}

// ServeCallback completes an authorization: the authorization server sent
// the person back with a code (or an error) and the flow's state. The page
// says whether the gateway obtained its token.
func (b *Broker) ServeCallback(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	q := r.URL.Query()
	f := b.take(q.Get("state"), r.PathValue("upstream"))
	if f == nil {
		w.WriteHeader(http.StatusBadRequest)
		callbackPage.Execute(w, page{Title: "Unknown authorization", Text: "This authorization is unknown, already used or expired. Ask the agent (or the gateway) for a new link."})
		return
	}
	res := result{code: q.Get("code"), state: q.Get("state"), iss: q.Get("iss")}
	if e := q.Get("error"); e != "" || res.code == "" {
		res.err = fmt.Errorf("the authorization server refused: %s %s", oneLine(e, 64), oneLine(q.Get("error_description"), 200))
	}
	f.result <- res
	var err error
	select {
	case <-f.done:
		err = f.err
	case <-time.After(callbackWait):
		err = errors.New("the token exchange is taking too long")
	}
	p := page{Title: "Authorized", Text: fmt.Sprintf("Portcullis can now reach %s%s. You can close this window.", f.g.upstream, forUser(f.g.userName))}
	if err != nil {
		w.WriteHeader(http.StatusBadGateway)
		p = page{Title: "Authorization failed", Text: fmt.Sprintf("Portcullis could not obtain access to %s: %s", f.g.upstream, oneLine(err.Error(), 300))}
	}
	callbackPage.Execute(w, p)
}

func forUser(u string) string {
	if u == "" {
		return ""
	}
	return " for " + u
}

// oneLine bounds s (text from the authorization server) for a page.
func oneLine(s string, n int) string {
	if len(s) > n {
		s = s[:n] + "..."
	}
	return s
}

type page struct{ Title, Text string }

var callbackPage = template.Must(template.New("callback").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>Portcullis: {{.Title}}</title></head>
<body style="font-family:sans-serif;max-width:40em;margin:4em auto"><h1>{{.Title}}</h1><p>{{.Text}}</p></body></html>
`))

// vaultName is where a grant's token is sealed.
func vaultName(k grantKey) string {
	if k.user == "" {
		return "oauth." + k.upstream + ".gateway"
	}
	sum := sha256.Sum256([]byte(k.user))
	return "oauth." + k.upstream + "." + hex.EncodeToString(sum[:8])
}

// guardedClient is the client for what upstreams name: https only (http
// on loopback, as for issuers), no redirects followed, bounded in time,
// never to link-local, multicast or unspecified addresses (cloud metadata,
// say) and, unless private is set, not to loopback or private networks
// either, whatever a name resolves to when it is dialled.
func guardedClient(private bool) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = http.ProxyFromEnvironment
	d := &net.Dialer{Timeout: requestTimeout, Control: netguard.Control(private, "the upstream is not on a private network: http.oauth.private_networks")}
	t.DialContext = d.DialContext
	return &http.Client{
		Timeout:   requestTimeout,
		Transport: secureOnly{t},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

type secureOnly struct{ next http.RoundTripper }

func (s secureOnly) RoundTrip(r *http.Request) (*http.Response, error) {
	if !config.SecureURL(r.URL.String()) {
		return nil, fmt.Errorf("refusing %s: OAuth requests go over https (http only to loopback)", (&url.URL{Scheme: r.URL.Scheme, Host: r.URL.Host}).String())
	}
	return s.next.RoundTrip(r)
}

var _ auth.OAuthHandler = (*Grant)(nil)
