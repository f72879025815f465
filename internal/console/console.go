// Package console is the gateway's web console, served on the admin
// listener at /console: approvals, alerts, the audit log, tools, agents
// and tasks, policy, and an overview, for the people who run and review
// Portcullis. It is server-rendered (html/template) with one small script
// of its own for the live approvals queue: nothing is fetched from
// elsewhere, and the Content-Security-Policy allows nothing else.
//
// People sign in with a one-time link (`portcullis console link --admin
// NAME`, or the one `serve --dev` prints) that becomes a session: a
// random ID in a Secure, HttpOnly, SameSite=Strict cookie, kept in memory
// (30 minutes idle, 8 hours at most). Every change is a POST carrying the
// session's CSRF token from a same-origin page, checked against the
// person's role (viewer, approver, operator, admin: config.Admin), and is
// carried out by the same operations as the CLI, audited in the person's
// name.
package console

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/oidcrp"
	"github.com/portcullis-dev/portcullis/internal/ops"
	"github.com/portcullis-dev/portcullis/internal/policy"
	"github.com/portcullis-dev/portcullis/internal/reason"
	"github.com/portcullis-dev/portcullis/internal/store"
)

// Prefix is where the console is served.
const Prefix = "/console"

// Session bounds.
const (
	idleTimeout  = 30 * time.Minute
	maxLifetime  = 8 * time.Hour
	maxSessions  = 1000
	cookieName   = "portcullis_console"
	maxFormBytes = 64 << 10
)

// CSP is the console's Content-Security-Policy: its own script and style,
// nothing else, no framing.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// UpstreamState is an upstream's health as the overview shows it.
type UpstreamState struct {
	Name    string
	Healthy bool
}

// Options are what the console works with.
type Options struct {
	Config    *config.Config
	Store     *store.DB
	Ops       *ops.Ops
	Engine    *policy.Engine
	Upstreams func() []UpstreamState
	Log       *slog.Logger
	Now       func() time.Time
	// Integrity reports the store's last integrity check ("" when it
	// passed: the gateway checks at start and periodically).
	Integrity func() string
	// IdPSecret is console.sign_in's client secret, resolved ("" for a
	// public client); IdPClient the HTTP client that reaches the provider.
	IdPSecret string
	IdPClient *http.Client
}

// Server is the console.
type Server struct {
	o     Options
	pages *template.Template
	mux   *http.ServeMux

	idp *idp // console.sign_in, if configured

	mu       sync.Mutex
	sessions map[string]*session
	// Refused sign-ins are counted and audited at most once a
	// refusalEvery, so that a page looping on bogus links cannot flood
	// the audit log.
	refused     int
	lastRefusal time.Time

	maskMu sync.Mutex // held calls' masked arguments, by their hash
	masked map[string]maskedArgs

	ovMu   sync.Mutex // the overview's figures, reused for overviewTTL
	ovAt   time.Time
	ovData map[string]any
}

type session struct {
	id            string
	CSRF          string // the form token of every change
	Admin, Role   string
	created, seen time.Time
	// flash and flashErr are what the last change did, shown once.
	flash, flashErr string
	// fixedRole: the role came from the identity provider's groups at
	// sign-in (not from an admin of the configuration).
	fixedRole bool
}

type maskedArgs struct {
	text string
	n    int
}

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// New returns the console.
func New(o Options) (*Server, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	t, err := template.New("").Funcs(funcs).ParseFS(templateFS, "templates/*.html")
	if err != nil {
		return nil, fmt.Errorf("console templates: %w", err)
	}
	s := &Server{o: o, pages: t, sessions: map[string]*session{}, masked: map[string]maskedArgs{}}
	if si := o.Config.Console.SignIn; si != nil {
		hc := o.IdPClient
		if hc == nil {
			hc = http.DefaultClient
		}
		s.idp = &idp{cfg: si, pending: map[string]pendingSignIn{},
			rp: &oidcrp.Provider{Issuer: si.Issuer, ClientID: si.ClientID, ClientSecret: o.IdPSecret, RedirectURL: si.RedirectURL, Scopes: []string{"email", "profile"}, HTTP: hc}}
	}
	s.routes()
	return s, nil
}

// Handler serves the console (mount it at Prefix+"/").
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", CSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "same-origin") // "no-referrer" makes Chromium send Origin: null on the console's own forms
		h.Set("Cache-Control", "no-store")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		s.mux.ServeHTTP(w, r)
	})
}

// roleRank orders the roles.
func roleRank(r string) int { return slices.Index(config.ConsoleRoles, r) }

// route is a handler that needs a signed-in person with at least role
// (and, for a change, a valid CSRF token from a same-origin page).
func (s *Server) route(pattern, role string, h func(w http.ResponseWriter, r *http.Request, ss *session)) {
	change := strings.HasPrefix(pattern, "POST ")
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		ss := s.current(r)
		if ss == nil {
			if change {
				http.Error(w, "not signed in", http.StatusUnauthorized)
				return
			}
			s.render(w, r, http.StatusUnauthorized, "signin", nil, s.signInData())
			return
		}
		if change {
			r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
			if err := r.ParseForm(); err != nil {
				http.Error(w, "unreadable form", http.StatusBadRequest)
				return
			}
			origin := sameOrigin(r)
			if !origin || subtle.ConstantTimeCompare([]byte(r.PostFormValue("csrf")), []byte(ss.CSRF)) != 1 {
				s.o.Log.Warn("console: change refused (CSRF)", "admin", ss.Admin, "path", r.URL.Path, "same_origin", origin,
					"origin", r.Header.Get("Origin"), "sec_fetch_site", r.Header.Get("Sec-Fetch-Site"), "token", r.PostFormValue("csrf") != "")
				http.Error(w, "refused: the form did not come from this console (CSRF)", http.StatusForbidden)
				return
			}
		}
		if roleRank(ss.Role) < roleRank(role) {
			s.render(w, r, http.StatusForbidden, "error", ss, map[string]any{"Title": "Not allowed", "Message": fmt.Sprintf("this needs the %s role; you are %s (%s)", role, ss.Admin, ss.Role)})
			return
		}
		h(w, r, ss)
	})
}

// signInData is what the sign-in page offers besides links.
func (s *Server) signInData() map[string]any {
	if s.idp == nil {
		return nil
	}
	return map[string]any{"IdP": s.idp.cfg.Issuer}
}

// sameOrigin reports whether a change came from a page of this origin:
// Sec-Fetch-Site (when the browser sends it) and Origin (when present)
// must say so.
func sameOrigin(r *http.Request) bool {
	if sfs := r.Header.Get("Sec-Fetch-Site"); sfs != "" && sfs != "same-origin" {
		return false
	}
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		if err != nil || u.Host != r.Host {
			return false
		}
	}
	return true
}

// current is the request's live session, if any.
func (s *Server) current(r *http.Request) *session {
	c, err := r.Cookie(cookieName)
	if err != nil || len(c.Value) < 20 {
		return nil
	}
	now := s.o.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.sessions[c.Value]
	if ss == nil {
		return nil
	}
	// The live queue's refresh is not the person's activity: an open tab
	// alone does not keep a session past its idle timeout.
	touch := r.URL.Query().Get("fragment") != "1"
	if now.Sub(ss.seen) > idleTimeout || now.Sub(ss.created) > maxLifetime {
		delete(s.sessions, c.Value)
		return nil
	}
	// The role is read again: an admin removed or narrowed in the
	// configuration is so at once.
	if !ss.fixedRole {
		a, ok := s.o.Config.AdminNamed(ss.Admin)
		if !ok {
			delete(s.sessions, c.Value)
			return nil
		}
		ss.Role = a.ConsoleRole()
	}
	if touch {
		ss.seen = now
	}
	cp := *ss
	return &cp
}

// setFlash records what a change did, for the next page the person sees.
func (s *Server) setFlash(ss *session, done string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if live := s.sessions[ss.id]; live != nil {
		live.flash, live.flashErr = done, ""
		if err != nil {
			live.flash, live.flashErr = "", err.Error()
		}
	}
}

// takeFlash returns and clears it.
func (s *Server) takeFlash(ss *session) (string, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	live := s.sessions[ss.id]
	if live == nil {
		return "", ""
	}
	f, e := live.flash, live.flashErr
	live.flash, live.flashErr = "", ""
	return f, e
}

// linkForm is a sign-in link's token: "pcl_" and 52 characters of
// rand.Text (ops.ConsoleLink).
func linkForm(token string) bool {
	if len(token) != 56 || !strings.HasPrefix(token, "pcl_") {
		return false
	}
	for _, c := range token[4:] {
		if !(c >= 'A' && c <= 'Z' || c >= '2' && c <= '7') {
			return false
		}
	}
	return true
}

// refusalEvery bounds how often refused sign-ins are audited (the others
// are counted into the next event).
const refusalEvery = 10 * time.Second

// confirmSignIn is what a sign-in link opens: a page with one button. The
// link itself changes nothing (a preview fetching it does not use it up);
// the button's POST does.
func (s *Server) confirmSignIn(w http.ResponseWriter, r *http.Request) {
	s.render(w, r, http.StatusOK, "confirm", nil, map[string]any{"Token": r.URL.Query().Get("token")})
}

// signIn consumes a one-time link (posted from its confirmation page of
// this origin) and starts a session, ending the browser's previous one.
func (s *Server) signIn(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if r.ParseForm() != nil || !sameOrigin(r) {
		http.Error(w, "refused: sign in from the link's own page", http.StatusForbidden)
		return
	}
	token := r.PostFormValue("token")
	ctx := r.Context()
	var admin string
	err := errors.New("not a sign-in link")
	if linkForm(token) {
		admin, err = s.o.Store.UseConsoleLink(ctx, token, s.o.Now())
	}
	if err == nil {
		if _, ok := s.o.Config.AdminNamed(admin); !ok {
			err = errors.New("no longer an admin")
		}
	}
	if err != nil {
		s.refuse(ctx, r, err)
		s.render(w, r, http.StatusUnauthorized, "signin", nil, map[string]any{"Error": "This sign-in link is unknown, was used already or has expired. Ask for a new one (portcullis console link)."})
		return
	}
	a, _ := s.o.Config.AdminNamed(admin)
	s.startSession(w, r, admin, a.ConsoleRole(), false, false, "one-time link")
}

// refuse audits a refused sign-in, at most once a refusalEvery.
func (s *Server) refuse(ctx context.Context, r *http.Request, why error) {
	now := s.o.Now()
	s.mu.Lock()
	s.refused++
	if now.Sub(s.lastRefusal) < refusalEvery {
		s.mu.Unlock()
		return
	}
	n := s.refused
	s.refused, s.lastRefusal = 0, now
	s.mu.Unlock()
	e := audit.New(audit.TypeIdentity, audit.OutcomeDeny, reason.SignInRefused, now, audit.Subject{RemoteAddr: r.RemoteAddr})
	e.Detail = fmt.Sprintf("console: %v (%d refused sign-ins since the last such event)", why, n)
	s.write(ctx, e)
}

func (s *Server) signOut(w http.ResponseWriter, r *http.Request, ss *session) {
	s.mu.Lock()
	delete(s.sessions, ss.id)
	s.mu.Unlock()
	s.write(r.Context(), audit.New(audit.TypeIdentity, audit.OutcomeInfo, reason.ConsoleSignedOut, s.o.Now(), audit.Subject{User: ss.Admin}))
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: Prefix, HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode, MaxAge: -1})
	http.Redirect(w, r, Prefix+"/", http.StatusSeeOther)
}

// sweep drops expired sessions (s.mu held).
func (s *Server) sweep() {
	now := s.o.Now()
	for id, ss := range s.sessions {
		if now.Sub(ss.seen) > idleTimeout || now.Sub(ss.created) > maxLifetime {
			delete(s.sessions, id)
		}
	}
}

func (s *Server) write(ctx context.Context, e *audit.Event) {
	if err := audit.WriteNow(ctx, s.o.Store, e); err != nil {
		s.o.Log.Error("audit event lost", "type", e.Type, "code", e.Code, "err", err)
	}
}

func randomID() string { return rand.Text() + rand.Text() }

// static serves the embedded style and script.
func (s *Server) static() http.Handler {
	sub, _ := fs.Sub(staticFS, "static")
	return http.StripPrefix(Prefix+"/static/", http.FileServerFS(sub))
}
