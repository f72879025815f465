package gateway

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
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

// agentTLS is the agent listener's TLS config: the gateway's certificate
// from the agent CA, and client SVIDs verified against the CA (accepted,
// not required: token-only agents still connect).
func (g *Gateway) agentTLS() (*tls.Config, error) {
	der, key, err := g.ca.ServerCertificate(g.cfg.Listen.TLS.Names)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(g.ca.Certificate())
	for _, c := range g.trust.Federated() {
		pool.AddCert(c)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{{Certificate: [][]byte{der, g.ca.Certificate().Raw}, PrivateKey: key}},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    pool,
	}, nil
}

type svidResponse struct {
	SPIFFEID string    `json:"spiffe_id"`
	SVID     string    `json:"svid"`   // PEM
	Bundle   string    `json:"bundle"` // PEM
	Expires  time.Time `json:"expires"`
}

// serveEnrol exchanges a one-time join token and a CSR for an X.509-SVID
// of a new agent instance. The agent's key never leaves it.
func (g *Gateway) serveEnrol(w http.ResponseWriter, r *http.Request) {
	var req struct {
		JoinToken string `json:"join_token"`
		CSR       string `json:"csr"` // base64 DER
	}
	e := audit.New(audit.TypeIdentity, audit.OutcomeDeny, reason.SVIDIssued, time.Now(), audit.Subject{RemoteAddr: r.RemoteAddr})
	fail := func(status int, msg string) {
		e.Detail = msg
		g.submit(e)
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
	agent, err := g.store.UseJoinToken(r.Context(), req.JoinToken, time.Now())
	if err != nil {
		fail(http.StatusUnauthorized, "join token invalid, used or expired")
		return
	}
	e.Agent = agent
	var inst [6]byte
	rand.Read(inst[:])
	g.issueSVID(w, r, e, agent, fmt.Sprintf("%x", inst), csr, "active")
}

// serveRotate issues a fresh SVID for the same instance to an agent that
// presents its current, valid SVID over mutual TLS.
func (g *Gateway) serveRotate(w http.ResponseWriter, r *http.Request) {
	e := audit.New(audit.TypeIdentity, audit.OutcomeDeny, reason.SVIDRotated, time.Now(), audit.Subject{RemoteAddr: r.RemoteAddr})
	p, err := g.authn.SVIDPrincipal(authn.ClientCert(r))
	if authn.ClientCert(r) == nil || err != nil {
		e.Detail = "rotation needs the current SVID over mutual TLS"
		g.submit(e)
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
	id, _ := identity.SVIDOf(authn.ClientCert(r))
	_, instance, _ := identity.AgentOf(id)
	e.Agent = p.Agent
	g.issueSVID(w, r, e, p.Agent, instance, csr, "active")
}

func (g *Gateway) issueSVID(w http.ResponseWriter, r *http.Request, e *audit.Event, agent, instance string, csr []byte, state string) {
	if _, ok := g.cfg.Agent(agent); !ok {
		e.Detail = "agent no longer configured"
		g.submit(e)
		writeError(w, http.StatusForbidden, e.Detail)
		return
	}
	id, err := g.ca.AgentID(agent, instance)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	cert, err := g.ca.SignCSR(csr, id, g.cfg.Identity.SVIDTTL.D())
	if err != nil {
		e.Detail = err.Error()
		g.submit(e)
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if err := g.store.PutInstance(r.Context(), store.Instance{SPIFFEID: id.String(), Agent: agent, Serial: cert.SerialNumber.Text(16), NotAfter: cert.NotAfter, State: state}); err != nil {
		writeError(w, http.StatusServiceUnavailable, "store unavailable")
		return
	}
	e.Outcome, e.Credential = audit.OutcomeAllow, id.String()
	e.Detail = fmt.Sprintf("serial %s, expires %s", cert.SerialNumber.Text(16), cert.NotAfter.UTC().Format(time.RFC3339))
	if err := g.recorder.Record(r.Context(), e); err != nil {
		writeError(w, http.StatusServiceUnavailable, "audit unavailable")
		return
	}
	writeJSONResponse(w, http.StatusOK, svidResponse{
		SPIFFEID: id.String(), Expires: cert.NotAfter, Bundle: string(g.ca.BundlePEM()),
		SVID: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})),
	})
}

func (g *Gateway) serveBundle(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/x-pem-file")
	w.Write(g.ca.BundlePEM())
}
