package gateway

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"path/filepath"
	"time"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/config"
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
	for _, c := range g.federated {
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
	p, err := g.authn.svidPrincipal(clientCert(r))
	if clientCert(r) == nil || err != nil {
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
	id, _ := identity.SVIDOf(clientCert(r))
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

// CreateJoinToken makes a one-time join token for an agent
// (`portcullis agent join-token`), valid for identity.join_token_ttl.
func CreateJoinToken(ctx context.Context, cfg *config.Config, agent string) (string, time.Time, error) {
	if _, ok := cfg.Agent(agent); !ok {
		return "", time.Time{}, fmt.Errorf("join token: %w: %q", ErrUnknownAgent, agent)
	}
	var b [24]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", time.Time{}, err
	}
	tok := "pcj-" + base64.RawURLEncoding.EncodeToString(b[:])
	exp := time.Now().Add(cfg.Identity.JoinTokenTTL.D())
	_, err := withStore(cfg, func(st *store.SQLite) (struct{}, error) {
		e := audit.New(audit.TypeIdentity, audit.OutcomeInfo, reason.JoinTokenCreated, time.Now(), audit.Subject{Agent: agent})
		e.Detail = "expires " + exp.UTC().Format(time.RFC3339)
		if err := audit.WriteNow(ctx, st, e); err != nil {
			return struct{}{}, err
		}
		return struct{}{}, st.AddJoinToken(ctx, tok, agent, exp)
	})
	return tok, exp, err
}

// ListInstances returns enrolled agent instances.
func ListInstances(ctx context.Context, cfg *config.Config) ([]store.Instance, error) {
	return withStore(cfg, func(st *store.SQLite) ([]store.Instance, error) { return st.Instances(ctx) })
}

func (g *Gateway) loadCA() error {
	ca, err := identity.LoadOrCreateCA(filepath.Join(g.dataDir, "keys"), g.cfg.Identity.TrustDomain, nil)
	if err != nil {
		return err
	}
	g.ca = ca
	g.authn.ca = ca
	own := x509.NewCertPool()
	own.AddCert(ca.Certificate())
	g.authn.trust = map[string]*x509.CertPool{ca.TrustDomain().Name(): own}
	g.authn.foreign = map[string]string{}
	for _, f := range g.cfg.Identity.Federation {
		b, err := readSmall(g.cfg.Path(f.Bundle), 1<<20)
		if err != nil {
			return fmt.Errorf("federation %s: %w", f.TrustDomain, err)
		}
		pool := x509.NewCertPool()
		for rest := b; ; {
			var blk *pem.Block
			if blk, rest = pem.Decode(rest); blk == nil {
				break
			}
			c, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				return fmt.Errorf("federation %s bundle: %w", f.TrustDomain, err)
			}
			pool.AddCert(c)
			g.federated = append(g.federated, c)
		}
		g.authn.trust[f.TrustDomain] = pool
		for id, agent := range f.Agents {
			g.authn.foreign[id] = agent
		}
	}
	return nil
}

// RetireInstance ends an agent instance for good: its SPIFFE ID is revoked
// and the instance recorded as retired.
func RetireInstance(ctx context.Context, cfg *config.Config, spiffeID, by string) error {
	if err := Revoke(ctx, cfg, store.RevokeToken, spiffeID, by, "instance retired"); err != nil {
		return err
	}
	_, err := withStore(cfg, func(st *store.SQLite) (struct{}, error) {
		ins, err := st.Instances(ctx)
		if err != nil {
			return struct{}{}, err
		}
		for _, in := range ins {
			if in.SPIFFEID == spiffeID {
				in.State = "retired"
				return struct{}{}, st.PutInstance(ctx, in)
			}
		}
		return struct{}{}, fmt.Errorf("no instance %s", spiffeID)
	})
	return err
}

// TaskRecord is a started task as the audit log recorded it.
type TaskRecord struct {
	ID, Agent, User, TokenID, Detail string
	Started                          time.Time
	Revoked                          bool
}

// ListTasks returns the tasks started (newest last), from the audit log,
// with whether they were revoked.
func ListTasks(ctx context.Context, cfg *config.Config) ([]TaskRecord, error) {
	return withStore(cfg, func(st *store.SQLite) ([]TaskRecord, error) {
		rows, err := st.Events(ctx, store.EventQuery{})
		if err != nil {
			return nil, err
		}
		revs, err := st.Revocations(ctx)
		if err != nil {
			return nil, err
		}
		var out []TaskRecord
		for _, r := range rows {
			if r.Type != string(audit.TypeToken) {
				continue
			}
			e, err := audit.Decode(r)
			if err != nil || e.Code != reason.TaskStarted {
				continue
			}
			out = append(out, TaskRecord{ID: e.Task, Agent: e.Agent, User: e.User, TokenID: e.Credential, Detail: e.Detail, Started: e.Time,
				Revoked: revs[store.RevokeTask][e.Task] || revs[store.RevokeToken][e.Credential] || revs[store.RevokeAgent][e.Agent]})
		}
		return out, nil
	})
}
