package admin

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"time"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/authn"
	"github.com/portcullis-dev/portcullis/internal/identity"
	"github.com/portcullis-dev/portcullis/internal/reason"
	"github.com/portcullis-dev/portcullis/internal/store"
)

// maxEnrolBody bounds an enrolment or rotation request.
const maxEnrolBody = 16 << 10

type svidResponse struct {
	SPIFFEID string    `json:"spiffe_id"`
	SVID     string    `json:"svid"`   // PEM
	Bundle   string    `json:"bundle"` // PEM
	Expires  time.Time `json:"expires"`
}

// serveEnrol exchanges a one-time join token and a CSR for an X.509-SVID
// of a new agent instance. The agent's key never leaves it.
func (s *Server) serveEnrol(w http.ResponseWriter, r *http.Request) {
	var req struct {
		JoinToken string `json:"join_token"`
		CSR       string `json:"csr"` // base64 DER
	}
	e := audit.New(audit.TypeIdentity, audit.OutcomeDeny, reason.SVIDIssued, time.Now(), audit.Subject{RemoteAddr: r.RemoteAddr})
	fail := func(status int, msg string) {
		e.Detail = msg
		s.submit(e)
		writeError(w, status, msg)
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxEnrolBody)).Decode(&req); err != nil {
		fail(http.StatusBadRequest, "body: want {join_token, csr}")
		return
	}
	csr, err := base64.StdEncoding.DecodeString(req.CSR)
	if err != nil {
		fail(http.StatusBadRequest, "csr: want base64 DER")
		return
	}
	agent, err := s.store.UseJoinToken(r.Context(), req.JoinToken, time.Now())
	if err != nil {
		fail(http.StatusUnauthorized, "join token invalid, used or expired")
		return
	}
	e.Agent = agent
	var inst [6]byte
	rand.Read(inst[:])
	s.issueSVID(w, r, e, agent, fmt.Sprintf("%x", inst), csr, "active")
}

// serveRotate issues a fresh SVID for the same instance to an agent that
// presents its current, valid SVID over mutual TLS.
func (s *Server) serveRotate(w http.ResponseWriter, r *http.Request) {
	e := audit.New(audit.TypeIdentity, audit.OutcomeDeny, reason.SVIDRotated, time.Now(), audit.Subject{RemoteAddr: r.RemoteAddr})
	p, err := s.authn.SVIDPrincipal(authn.ClientCert(r))
	if authn.ClientCert(r) == nil || err != nil {
		e.Detail = "rotation needs the current SVID over mutual TLS"
		s.submit(e)
		writeError(w, http.StatusUnauthorized, e.Detail)
		return
	}
	var req struct {
		CSR string `json:"csr"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxEnrolBody)).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "body: want {csr}")
		return
	}
	csr, err := base64.StdEncoding.DecodeString(req.CSR)
	if err != nil {
		writeError(w, http.StatusBadRequest, "csr: want base64 DER")
		return
	}
	// Only an SVID this CA issued rotates, into the same agent and
	// instance: a federated SVID is its own domain's to rotate and never
	// becomes one of ours.
	id, err := identity.SVIDOf(authn.ClientCert(r))
	agent, instance, ok := identity.AgentOf(id)
	if err != nil || !ok || !id.MemberOf(s.ca.TrustDomain()) || agent != p.Agent {
		e.Agent, e.Detail = p.Agent, "only an SVID of this trust domain's agent CA rotates"
		s.submit(e)
		writeError(w, http.StatusForbidden, e.Detail)
		return
	}
	e.Agent = p.Agent
	s.issueSVID(w, r, e, p.Agent, instance, csr, "active")
}

func (s *Server) issueSVID(w http.ResponseWriter, r *http.Request, e *audit.Event, agent, instance string, csr []byte, state string) {
	if _, ok := s.cfg.Agent(agent); !ok {
		e.Detail = "agent no longer configured"
		s.submit(e)
		writeError(w, http.StatusForbidden, e.Detail)
		return
	}
	id, err := s.ca.AgentID(agent, instance)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	cert, err := s.ca.SignCSR(csr, id, s.cfg.Identity.SVIDTTL.D())
	if err != nil {
		e.Detail = err.Error()
		s.submit(e)
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	// Recorded first: a certificate whose issue could not be recorded is
	// neither released nor made current.
	e.Outcome, e.Credential = audit.OutcomeAllow, id.String()
	e.Detail = fmt.Sprintf("serial %s, expires %s", cert.SerialNumber.Text(16), cert.NotAfter.UTC().Format(time.RFC3339))
	if err := s.rec.Record(r.Context(), e); err != nil {
		writeError(w, http.StatusServiceUnavailable, "audit unavailable")
		return
	}
	if err := s.store.PutInstance(r.Context(), store.Instance{SPIFFEID: id.String(), Agent: agent, Serial: cert.SerialNumber.Text(16), NotAfter: cert.NotAfter, State: state}); err != nil {
		writeError(w, http.StatusServiceUnavailable, "store unavailable")
		return
	}
	if s.revs != nil {
		s.revs.Enrolled(id.String(), cert.SerialNumber.Text(16))
	}
	writeJSONResponse(w, http.StatusOK, svidResponse{
		SPIFFEID: id.String(), Expires: cert.NotAfter, Bundle: string(s.ca.BundlePEM()),
		SVID: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})),
	})
}

func (s *Server) serveBundle(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/x-pem-file")
	w.Write(s.ca.BundlePEM())
}
