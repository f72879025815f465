package authserver

import (
	"crypto/subtle"
	"fmt"
	"net/http"

	"github.com/portcullis-dev/portcullis/internal/oidcrp"
)

// Federation signs people in through the organisation's identity
// provider (OpenID Connect, authorization code with PKCE) instead of, or
// besides, local passwords: the person the provider vouches for is the
// one who consents.
type Federation struct {
	Issuer, ClientID, ClientSecret string
	// UserClaim names the person in the provider's ID token (default
	// "email", else "sub").
	UserClaim string
}

// FederatedPath is where the identity provider sends people back.
const (
	FederatePath  = "/oauth2/federate"
	FederatedPath = "/oauth2/federated"
)

// federation is the server's side of it: the provider (as a relying
// party, internal/oidcrp).
type federation struct {
	cfg Federation
	rp  *oidcrp.Provider
}

// fedSignIn is a sign-in at the provider in flight for an authorization
// request.
type fedSignIn struct {
	state, verifier, nonce string
}

// serveFederate sends the person of an authorization request to the
// identity provider.
func (s *Server) serveFederate(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBody)
	if s.fed == nil || r.ParseForm() != nil {
		http.NotFound(w, r)
		return
	}
	a, err := s.st.request(r.PostForm.Get("id"))
	if err != nil || subtle.ConstantTimeCompare([]byte(r.PostForm.Get("csrf")), []byte(a.csrf)) != 1 {
		secureHeaders(w, "")
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, "<!doctype html><p>This sign-in request is unknown, expired or forged: start again from your client.</p>")
		return
	}
	f := oidcrp.NewFlow()
	authURL, err := s.fed.rp.AuthURL(r.Context(), f)
	if err != nil {
		s.o.Log.Warn("federated sign-in unavailable", "err", err)
		s.render(w, http.StatusBadGateway, a, "The identity provider cannot be reached; try again later.")
		return
	}
	s.st.federate(a.id, fedSignIn{state: f.State, verifier: f.Verifier, nonce: f.Nonce})
	http.Redirect(w, r, authURL, http.StatusFound)
}

// serveFederated takes the person back from the identity provider: the
// code is exchanged, the ID token verified (issuer, audience, expiry,
// nonce), and the person it names goes on to consent.
func (s *Server) serveFederated(w http.ResponseWriter, r *http.Request) {
	if s.fed == nil {
		http.NotFound(w, r)
		return
	}
	q := r.URL.Query()
	a, in := s.st.federated(q.Get("state"))
	if a == nil {
		secureHeaders(w, "")
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, "<!doctype html><p>This sign-in is unknown, already used or expired: start again from your client.</p>")
		return
	}
	fail := func(why string, err error) {
		s.o.Event(Event{Kind: EventRefused, Client: a.req.ClientID, Detail: "federated sign-in: " + why, Deny: true})
		s.o.Log.Warn("federated sign-in refused", "why", why, "err", err)
		s.render(w, http.StatusUnauthorized, a, "The identity provider did not sign you in.")
	}
	if e := q.Get("error"); e != "" {
		fail("the provider answered "+oneLine(e, 64), nil)
		return
	}
	_, claims, why, err := s.fed.rp.Finish(r.Context(), q.Get("code"), oidcrp.Flow{State: in.state, Verifier: in.verifier, Nonce: in.nonce})
	if err != nil {
		fail(why, err)
		return
	}
	claim := s.fed.cfg.UserClaim
	if claim == "" {
		claim = "email"
		if _, ok := claims[claim].(string); !ok {
			claim = "sub"
		}
	}
	user, _ := claims[claim].(string)
	if user == "" || len(user) > 256 {
		fail("the ID token names nobody in "+claim, nil)
		return
	}
	s.st.signedIn(a.id, user)
	s.render(w, http.StatusOK, a, "")
}

func oneLine(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
