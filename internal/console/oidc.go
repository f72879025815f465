package console

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/oidcrp"
	"github.com/portcullis-dev/portcullis/internal/reason"
)

// Sign-in through the organisation's identity provider (console.sign_in):
// authorization code with PKCE, a nonce and a one-time state; the ID
// token's person is the admin it names (by name or identity), or else
// gets the strongest role its groups map to.

// pendingTTL bounds a sign-in in flight; maxPending how many may be.
const (
	pendingTTL = 10 * time.Minute
	maxPending = 10000
	// bindCookie ties a sign-in in flight to the browser that started it
	// (SameSite=Lax: the provider's redirect back is a cross-site GET).
	bindCookie = "portcullis_console_signin"
	// GroupPrefix names the people the provider's groups let in (they are
	// no admin of the configuration): "idp:" and the user claim.
	GroupPrefix = "idp:"
)

type idp struct {
	cfg *config.ConsoleSignIn
	rp  *oidcrp.Provider

	mu      sync.Mutex
	pending map[string]pendingSignIn // by state
}

type pendingSignIn struct {
	flow oidcrp.Flow
	bind string
	at   time.Time
}

// startIdP sends the person to the provider (a POST from the sign-in page
// of this origin).
func (s *Server) startIdP(w http.ResponseWriter, r *http.Request) {
	if s.idp == nil || !sameOrigin(r) {
		http.NotFound(w, r)
		return
	}
	in := pendingSignIn{flow: oidcrp.NewFlow(), bind: randomID(), at: s.o.Now()}
	authURL, err := s.idp.rp.AuthURL(r.Context(), in.flow)
	if err != nil {
		s.o.Log.Warn("console: identity provider unavailable", "err", err)
		s.render(w, r, http.StatusBadGateway, "signin", nil, map[string]any{"Error": "The identity provider cannot be reached; try again later.", "IdP": s.idp.cfg.Issuer})
		return
	}
	// This browser's session, if any, ends here (its cookie comes with
	// this same-origin POST, not with the provider's redirect back).
	if old := s.current(r); old != nil {
		s.mu.Lock()
		delete(s.sessions, old.id)
		s.mu.Unlock()
	}
	s.idp.mu.Lock()
	var oldest string
	for k, v := range s.idp.pending {
		if s.o.Now().Sub(v.at) > pendingTTL {
			delete(s.idp.pending, k)
		} else if oldest == "" || v.at.Before(s.idp.pending[oldest].at) {
			oldest = k
		}
	}
	if len(s.idp.pending) >= maxPending {
		delete(s.idp.pending, oldest) // bounded: the oldest sign-in in flight gives way
	}
	s.idp.pending[in.flow.State] = in
	s.idp.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: bindCookie, Value: in.bind, Path: Prefix + "/oidc", HttpOnly: true, Secure: true, SameSite: http.SameSiteLaxMode, MaxAge: int(pendingTTL.Seconds())})
	http.Redirect(w, r, authURL, http.StatusFound)
}

// idpCallback takes the person back: the state used once, the code
// exchanged with its verifier, the ID token verified (issuer, audience,
// expiry, nonce), and the person mapped to a role.
func (s *Server) idpCallback(w http.ResponseWriter, r *http.Request) {
	if s.idp == nil {
		http.NotFound(w, r)
		return
	}
	q := r.URL.Query()
	// The state is used up only by the browser that started the sign-in
	// (its binding cookie): another one presenting the callback URL (login
	// CSRF, a replayed redirect) is refused without spoiling it.
	bound := func(in pendingSignIn) bool {
		c, err := r.Cookie(bindCookie)
		return err == nil && subtle.ConstantTimeCompare([]byte(c.Value), []byte(in.bind)) == 1
	}
	s.idp.mu.Lock()
	in, ok := s.idp.pending[q.Get("state")]
	ok = ok && bound(in)
	if ok {
		delete(s.idp.pending, q.Get("state"))
	}
	s.idp.mu.Unlock()
	fail := func(why string, err error) {
		s.o.Log.Warn("console: identity provider sign-in refused", "why", why, "err", err)
		s.refuse(r.Context(), r, errors.New("identity provider: "+why))
		s.render(w, r, http.StatusUnauthorized, "signin", nil, map[string]any{"Error": "The identity provider did not sign you in to the console.", "IdP": s.idp.cfg.Issuer})
	}
	if !ok || s.o.Now().Sub(in.at) > pendingTTL {
		fail("unknown, used or expired sign-in, or started in another browser", nil)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: bindCookie, Value: "", Path: Prefix + "/oidc", HttpOnly: true, Secure: true, SameSite: http.SameSiteLaxMode, MaxAge: -1})
	if e := q.Get("error"); e != "" {
		fail("the provider refused", nil)
		return
	}
	idt, claims, why, err := s.idp.rp.Finish(r.Context(), q.Get("code"), in.flow)
	if err != nil {
		fail(why, err)
		return
	}
	user, role, viaGroups, why := s.idpRole(claims)
	if role == "" {
		// A verified person refused: recorded one by one, with who.
		e := audit.New(audit.TypeIdentity, audit.OutcomeDeny, reason.SignInRefused, s.o.Now(), audit.Subject{User: user, RemoteAddr: r.RemoteAddr})
		e.Detail = "console, identity provider " + s.idp.cfg.Issuer + ": " + why
		s.write(r.Context(), e)
		s.o.Log.Warn("console: identity provider sign-in refused", "why", why)
		s.render(w, r, http.StatusUnauthorized, "signin", nil, map[string]any{"Error": "The identity provider did not sign you in to the console.", "IdP": s.idp.cfg.Issuer})
		return
	}
	s.startSession(w, r, user, role, viaGroups, true, fmt.Sprintf("identity provider %s, subject %s", s.idp.cfg.Issuer, idt.Subject))
}

// idpRole maps an ID token's claims to the console: the admin whose
// identities include the user claim (never an admin's local name), with
// that admin's role; else, named GroupPrefix+user, the strongest role its
// groups map to, fixed for the session. why says what refused it.
func (s *Server) idpRole(claims map[string]any) (user, role string, viaGroups bool, why string) {
	claim := s.idp.cfg.UserClaim
	if claim == "" {
		claim = "email"
	}
	user, _ = claims[claim].(string)
	switch {
	case user == "":
		return "", "", false, "the ID token has no " + claim
	case len(user) > 256:
		return "", "", false, "the ID token's " + claim + " is too long"
	case claim == "email" && claims["email_verified"] != true:
		// An address the person set themselves proves nothing.
		return user, "", false, "the provider has not verified the email address"
	}
	for _, a := range s.o.Config.Admins {
		if a.HasIdentity(user) {
			return a.Name, a.ConsoleRole(), false, ""
		}
	}
	gc := s.idp.cfg.GroupsClaim
	if gc == "" {
		gc = "groups"
	}
	groups, _ := claims[gc].([]any)
	best := -1
	for _, g := range groups {
		if name, ok := g.(string); ok {
			if r, ok := s.idp.cfg.Groups[name]; ok {
				best = max(best, slices.Index(config.ConsoleRoles, r))
			}
		}
	}
	if best < 0 {
		return user, "", false, "no admin has this identity and no group of it maps to a role"
	}
	return GroupPrefix + user, config.ConsoleRoles[best], true, ""
}

// startSession signs a person in (ending the browser's previous session).
// fromIdP: the request came from the provider's redirect, where a
// SameSite=Strict cookie would not follow a redirect at once: a page of
// this origin goes on to the console.
func (s *Server) startSession(w http.ResponseWriter, r *http.Request, admin, role string, fixedRole, fromIdP bool, how string) {
	if old := s.current(r); old != nil {
		s.mu.Lock()
		delete(s.sessions, old.id)
		s.mu.Unlock()
	}
	ss := &session{id: randomID(), CSRF: randomID(), Admin: admin, Role: role, created: s.o.Now(), seen: s.o.Now(), fixedRole: fixedRole}
	s.mu.Lock()
	s.sweep()
	if len(s.sessions) >= maxSessions {
		s.mu.Unlock()
		http.Error(w, "too many console sessions", http.StatusServiceUnavailable)
		return
	}
	s.sessions[ss.id] = ss
	s.mu.Unlock()
	e := audit.New(audit.TypeIdentity, audit.OutcomeAllow, reason.ConsoleSignedIn, s.o.Now(), audit.Subject{User: admin, RemoteAddr: r.RemoteAddr})
	e.Detail = "console, role " + role + ", " + how
	if fixedRole {
		e.Detail += " (the role from the provider's groups)"
	}
	s.write(r.Context(), e)
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: ss.id, Path: Prefix, HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode, MaxAge: int(maxLifetime.Seconds())})
	if fromIdP {
		s.render(w, r, http.StatusOK, "continue", nil, map[string]any{"Admin": admin, "Role": role})
		return
	}
	http.Redirect(w, r, Prefix+"/", http.StatusSeeOther)
}
