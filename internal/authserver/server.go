package authserver

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/rs/cors"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/portcullis-dev/portcullis/internal/oidcrp"
)

// Paths of the server on the gateway's agent listener.
const (
	pathPrefix   = "/oauth2/"
	LoginPath    = "/oauth2/login"
	RegisterPath = "/oauth2/register"
	// AgentClaim is the access token claim naming the agent the person let
	// the client act as.
	AgentClaim = "portcullis_agent"
	// ScopeMCP is the scope of the gateway's MCP endpoint.
	ScopeMCP = "mcp"
	// KeyFile is the signing key in the data directory's keys folder.
	KeyFile = "authserver.key"
)

// Defaults and bounds.
const (
	DefaultAccessTTL  = 10 * time.Minute
	DefaultRefreshTTL = 24 * time.Hour
	maxAttempts       = 3 // wrong passwords before an authorization request is dropped
	maxFormBody       = 8 << 10
)

// Event kinds for the audit log.
const (
	EventClientRegistered = "client_registered"
	EventConsented        = "consented"
	EventRefused          = "refused"
)

// Event is something the audit log records.
type Event struct {
	Kind                string
	User, Agent, Client string
	Detail              string
	Deny                bool
}

// Options configure the server.
type Options struct {
	// Issuer is the server's URL (the gateway's origin); Resource the
	// MCP endpoint its tokens are for.
	Issuer, Resource string
	// Agents are those a person may let a client act as.
	Agents []string
	// Users are the people who may sign in.
	Users map[string]User
	// KeyDir holds the signing key (created on first use).
	KeyDir                string
	AccessTTL, RefreshTTL time.Duration
	// Scopes are scopes granted besides mcp and the OIDC ones.
	Scopes []string
	// Federation signs people in through the organisation's identity
	// provider (nil: local users only).
	Federation *Federation
	// MetadataClient fetches client ID metadata documents (nil: public
	// https addresses only; tests give their own).
	MetadataClient *http.Client
	Log            *slog.Logger
	Event          func(Event)
	Now            func() time.Time
}

// User is a person who may sign in: their password and the agents they
// may let a client act as (none: Options.Agents).
type User struct {
	Password string
	Agents   []string
}

// Server is the built-in authorization server.
type Server struct {
	o        Options
	st       *storage
	op       *op.Provider
	key      *ecdsa.PrivateKey
	keyID    string
	failures *throttle // wrong passwords, by "u:"+user and "a:"+address
	signups  *throttle // registrations by address
	fed      *federation
	cimd     *cimd
}

// New returns a server; it loads (or creates) its signing key.
func New(o Options) (*Server, error) {
	if o.Issuer == "" || o.Resource == "" {
		return nil, errors.New("authorization server: issuer and resource are required")
	}
	if (len(o.Users) == 0 && o.Federation == nil) || len(o.Agents) == 0 {
		return nil, errors.New("authorization server: needs users or a federation, and at least one agent")
	}
	if o.AccessTTL <= 0 {
		o.AccessTTL = DefaultAccessTTL
	}
	if o.RefreshTTL <= 0 {
		o.RefreshTTL = DefaultRefreshTTL
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Event == nil {
		o.Event = func(Event) {}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &Server{o: o, failures: newThrottle(o.Now), signups: newThrottle(o.Now)}
	s.cimd = &cimd{s: s, http: o.MetadataClient, cache: map[string]cimdEntry{}}
	if s.cimd.http == nil {
		s.cimd.http = publicOnly()
	}
	if f := o.Federation; f != nil {
		s.fed = &federation{cfg: *f, rp: &oidcrp.Provider{Issuer: f.Issuer, ClientID: f.ClientID, ClientSecret: f.ClientSecret,
			RedirectURL: o.Issuer + FederatedPath, Scopes: []string{"email"}, HTTP: &http.Client{Timeout: oidcrp.Timeout,
				CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}}
	}
	var err error
	if s.key, err = loadOrCreateKey(filepath.Join(o.KeyDir, KeyFile)); err != nil {
		return nil, err
	}
	der, _ := x509.MarshalPKIXPublicKey(&s.key.PublicKey)
	sum := sha256.Sum256(der)
	s.keyID = hex.EncodeToString(sum[:8])
	s.st = newStorage(s)
	var crypto [32]byte
	rand.Read(crypto[:])
	cfg := &op.Config{
		CryptoKey:             crypto,
		CodeMethodS256:        true,
		GrantTypeRefreshToken: true,
		SupportedScopes:       append([]string{oidc.ScopeOpenID, oidc.ScopeOfflineAccess, ScopeMCP}, o.Scopes...),
	}
	opts := []op.Option{
		op.WithCustomEndpoints(op.NewEndpoint(pathPrefix+"authorize"), op.NewEndpoint(pathPrefix+"token"),
			op.NewEndpoint(pathPrefix+"userinfo"), op.NewEndpoint(pathPrefix+"revoke"),
			op.NewEndpoint(pathPrefix+"logout"), op.NewEndpoint(pathPrefix+"keys")),
		op.WithCustomIntrospectionEndpoint(op.NewEndpoint(pathPrefix + "introspect")),
		op.WithLogger(o.Log),
		// Browser-based clients may call the token endpoint from any
		// origin; no cookies, so never with credentials.
		op.WithCORSOptions(&cors.Options{
			AllowOriginFunc: func(string) bool { return true },
			AllowedMethods:  []string{http.MethodGet, http.MethodPost},
			AllowedHeaders:  []string{"Authorization", "Content-Type", "DPoP"},
		}),
	}
	if u, err := url.Parse(o.Issuer); err == nil && u.Scheme == "http" {
		opts = append(opts, op.WithAllowInsecure()) // loopback only: checked by configuration
	}
	if s.op, err = op.NewProvider(cfg, s.st, op.StaticIssuer(o.Issuer), opts...); err != nil {
		return nil, fmt.Errorf("authorization server: %w", err)
	}
	return s, nil
}

func (s *Server) now() time.Time { return s.o.Now() }

// PublicKey is the key the server's access tokens verify with.
func (s *Server) PublicKey() *ecdsa.PublicKey { return &s.key.PublicKey }

// Routes registers the server's endpoints on mux: its metadata (RFC 8414
// and OpenID discovery), the OAuth endpoints, registration and the
// sign-in page.
func (s *Server) Routes(mux *http.ServeMux) {
	mux.HandleFunc("GET /.well-known/oauth-authorization-server", s.serveMetadata)
	mux.HandleFunc("GET /.well-known/openid-configuration", s.serveMetadata)
	mux.HandleFunc("POST "+RegisterPath, s.serveRegister)
	mux.HandleFunc("GET "+LoginPath, s.serveLogin)
	mux.HandleFunc("POST "+LoginPath, s.serveConsent)
	mux.HandleFunc("POST "+FederatePath, s.serveFederate)
	mux.HandleFunc("GET "+FederatedPath, s.serveFederated)
	mux.Handle(pathPrefix+"authorize", defaultScope(s.op))
	// Served by serveConsent instead: the provider's callback would give a
	// code to whoever knows the request ID (the client does).
	mux.Handle(pathPrefix+"authorize/callback", http.NotFoundHandler())
	for _, p := range []string{"token", "keys", "revoke", "userinfo"} {
		mux.Handle(pathPrefix+p, s.op)
	}
}

// defaultScope gives an authorization request without a scope the mcp
// scope (MCP clients omit it when nothing names one).
func defaultScope(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && r.URL.Query().Get("scope") == "" {
			q := r.URL.Query()
			q.Set("scope", ScopeMCP+" "+oidc.ScopeOfflineAccess)
			r.URL.RawQuery = q.Encode()
		}
		next.ServeHTTP(w, r)
	})
}

// serveMetadata answers the server's metadata, with its registration
// endpoint and PKCE method.
func (s *Server) serveMetadata(w http.ResponseWriter, r *http.Request) {
	ctx := op.ContextWithIssuer(r.Context(), s.o.Issuer)
	d := op.CreateDiscoveryConfig(ctx, s.op, s.st)
	d.RegistrationEndpoint = s.o.Issuer + RegisterPath
	d.CodeChallengeMethodsSupported = []oidc.CodeChallengeMethod{oidc.CodeChallengeMethodS256}
	d.TokenEndpointAuthMethodsSupported = []oidc.AuthMethod{oidc.AuthMethodNone}
	d.GrantTypesSupported = []oidc.GrantType{oidc.GrantTypeCode, oidc.GrantTypeRefreshToken}
	d.ResponseTypesSupported = []string{string(oidc.ResponseTypeCode)}
	// Not served here.
	d.IntrospectionEndpoint, d.EndSessionEndpoint, d.DeviceAuthorizationEndpoint, d.CheckSessionIframe = "", "", "", ""
	d.ScopesSupported = append([]string{ScopeMCP, oidc.ScopeOfflineAccess}, s.o.Scopes...)
	// Fields the provider's type does not know.
	b, _ := json.Marshal(d)
	var doc map[string]any
	json.Unmarshal(b, &doc)
	doc["client_id_metadata_document_supported"] = true
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Access-Control-Allow-Origin", "*")
	json.NewEncoder(w).Encode(doc)
}

// page is the sign-in and consent page.
var page = template.Must(template.New("login").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>Portcullis: sign in</title></head>
<body style="font-family:sans-serif;max-width:36em;margin:3em auto">
<h1>Portcullis</h1>
<p><b>{{.Client}}</b> asks to use this gateway's tools for you, as an agent. It will return to <code>{{.Redirect}}</code>.</p>
{{if .Error}}<p style="color:#a00">{{.Error}}</p>{{end}}
{{if and .Federation (not .SignedIn)}}<form method="post" action="{{.FederateAction}}">
<input type="hidden" name="id" value="{{.ID}}"><input type="hidden" name="csrf" value="{{.CSRF}}">
<p><button>Sign in with {{.Federation}}</button></p></form>{{end}}
{{if or .SignedIn .Local}}<form method="post" action="{{.Action}}">
<input type="hidden" name="id" value="{{.ID}}"><input type="hidden" name="csrf" value="{{.CSRF}}">
{{if .SignedIn}}<p>Signed in as <b>{{.SignedIn}}</b>.</p>{{end}}
<p><label>Act as agent <select name="agent">{{range .Agents}}<option>{{.}}</option>{{end}}</select></label></p>
<p>Scopes: {{range .Scopes}}<code>{{.}}</code> {{end}}</p>
{{if not .SignedIn}}<p><label>User <input name="user" autocomplete="username" required></label></p>
<p><label>Password <input name="password" type="password" autocomplete="current-password" required></label></p>{{end}}
<p><button name="decision" value="allow">Allow</button> <button name="decision" value="deny" formnovalidate>Deny</button></p>
</form>{{end}}</body></html>
`))

type pageData struct {
	ID, CSRF, Client, Redirect, Action, Error string
	Agents, Scopes                            []string
	FederateAction, Federation, SignedIn      string // the identity provider's host; who it signed in
	Local                                     bool   // local users may sign in
}

// secureHeaders sets the page's headers; redirect is the origin the
// form's answer may send the browser on to (the client's validated
// redirect URI: browsers hold a form's redirects to form-action).
func secureHeaders(w http.ResponseWriter, redirect string) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", strings.TrimSpace("default-src 'none'; style-src 'unsafe-inline'; form-action 'self' "+redirect)+"; frame-ancestors 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
}

func (s *Server) render(w http.ResponseWriter, status int, a *authRequest, msg string) {
	redirect := ""
	if u, err := url.Parse(a.req.RedirectURI); err == nil {
		redirect = u.Scheme + "://" + u.Host
	}
	// The forms' answers send the browser on to the client, or to the
	// identity provider.
	targets := redirect
	if s.fed != nil {
		if u, err := url.Parse(s.fed.cfg.Issuer); err == nil {
			targets += " " + u.Scheme + "://" + u.Host
		}
	}
	secureHeaders(w, targets)
	c, _ := s.st.GetClientByClientID(context.Background(), a.req.ClientID)
	name := "a client"
	if cl, ok := c.(*client); ok {
		name = cl.name
	}
	d := pageData{ID: a.id, CSRF: a.csrf, Client: name, Redirect: redirect, Action: LoginPath, Error: msg, Agents: s.o.Agents, Scopes: a.req.Scopes,
		FederateAction: FederatePath, SignedIn: s.st.fedUserOf(a), Local: len(s.o.Users) > 0}
	if s.fed != nil {
		d.Federation = s.fed.cfg.Issuer
		if u, err := url.Parse(s.fed.cfg.Issuer); err == nil {
			d.Federation = u.Host
		}
	}
	w.WriteHeader(status)
	page.Execute(w, d)
}

func (s *Server) serveLogin(w http.ResponseWriter, r *http.Request) {
	a, err := s.st.open(r.URL.Query().Get("id"))
	if err != nil {
		secureHeaders(w, "")
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, "<!doctype html><p>This sign-in request is unknown or expired: start again from your client.</p>")
		return
	}
	s.render(w, http.StatusOK, a, "")
}

// serveConsent takes the person's answer: their name and password, the
// agent they let the client act as, allow or deny.
func (s *Server) serveConsent(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBody)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	id := r.PostForm.Get("id")
	a, err := s.st.request(id)
	if err != nil || subtle.ConstantTimeCompare([]byte(r.PostForm.Get("csrf")), []byte(a.csrf)) != 1 {
		secureHeaders(w, "")
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, "<!doctype html><p>This sign-in request is unknown, expired or forged: start again from your client.</p>")
		return
	}
	if r.PostForm.Get("decision") != "allow" {
		s.o.Event(Event{Kind: EventRefused, Client: a.req.ClientID, Detail: "the person denied the client", Deny: true})
		s.st.DeleteAuthRequest(r.Context(), id)
		op.AuthRequestError(w, r, a, oidc.ErrAccessDenied().WithDescription("the person denied access"), s.op)
		return
	}
	if fu := s.st.fedUserOf(a); fu != "" {
		s.consented(w, r, a, fu, r.PostForm.Get("agent"), s.o.Agents)
		return
	}
	user, agent := r.PostForm.Get("user"), r.PostForm.Get("agent")
	u, known := s.o.Users[user]
	named := "" // the audit log names only configured people
	if known {
		named = user
	}
	addr := remoteAddr(r)
	if s.failures.count("u:"+user) >= maxUserFailures || s.failures.count("a:"+addr) >= maxAddrFailures {
		s.o.Event(Event{Kind: EventRefused, User: named, Client: a.req.ClientID, Detail: "sign-in throttled after repeated wrong passwords (from " + addr + ")", Deny: true})
		s.render(w, http.StatusTooManyRequests, a, "Too many failed sign-ins: try again later.")
		return
	}
	if !s.checkPassword(user, r.PostForm.Get("password")) {
		s.failures.add("u:" + user)
		s.failures.add("a:" + addr)
		s.o.Event(Event{Kind: EventRefused, User: named, Client: a.req.ClientID, Detail: "wrong user or password (from " + addr + ")", Deny: true})
		if s.st.failedSignIn(id) {
			op.AuthRequestError(w, r, a, oidc.ErrAccessDenied().WithDescription("too many failed sign-ins"), s.op)
			return
		}
		s.render(w, http.StatusUnauthorized, a, "Wrong user or password.")
		return
	}
	allowed := u.Agents
	if len(allowed) == 0 {
		allowed = s.o.Agents
	}
	s.consented(w, r, a, user, agent, allowed)
}

// consented completes request a for user, who chose agent among allowed.
func (s *Server) consented(w http.ResponseWriter, r *http.Request, a *authRequest, user, agent string, allowed []string) {
	id := a.id
	if !slices.Contains(allowed, agent) || !slices.Contains(s.o.Agents, agent) {
		s.render(w, http.StatusForbidden, a, "You may not let a client act as that agent.")
		return
	}
	if err := s.st.complete(id, user, agent); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.o.Event(Event{Kind: EventConsented, User: user, Agent: agent, Client: a.req.ClientID, Detail: "scopes " + strings.Join(a.req.Scopes, " ")})
	// The code goes in the answer to the person's own POST, never through
	// a URL a client could fetch (the provider's callback is not served).
	op.AuthResponse(a, s.op, w, r.WithContext(op.ContextWithIssuer(r.Context(), s.o.Issuer)))
}

// fedUserOf is whom the identity provider signed in for a ("" if nobody).
func (st *storage) fedUserOf(a *authRequest) string {
	st.mu.Lock()
	defer st.mu.Unlock()
	return a.fedUser
}

// checkPassword compares in constant time whatever the name (an unknown
// name costs what a known one does).
func (s *Server) checkPassword(user, password string) bool {
	u, ok := s.o.Users[user]
	got := sha256.Sum256([]byte(password))
	exp := sha256.Sum256([]byte(u.Password))
	return subtle.ConstantTimeCompare(got[:], exp[:]) == 1 && ok && u.Password != ""
}

// loadOrCreateKey reads the P-256 signing key at path, creating it (0600)
// on first use.
func loadOrCreateKey(path string) (*ecdsa.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			return nil, err
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, err
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, fmt.Errorf("authorization server key: %w", err)
		}
		defer f.Close()
		if err := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
			return nil, err
		}
		return k, f.Sync()
	}
	if err != nil {
		return nil, fmt.Errorf("authorization server key: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("authorization server key %s: not PEM", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("authorization server key %s: %w", path, err)
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok || ek.Curve != elliptic.P256() {
		return nil, fmt.Errorf("authorization server key %s: want a P-256 key", path)
	}
	return ek, nil
}
