package admin

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/authn"
	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/identity"
	"github.com/portcullis-dev/portcullis/internal/ops"
	"github.com/portcullis-dev/portcullis/internal/policy"
	"github.com/portcullis-dev/portcullis/internal/store"
	"github.com/portcullis-dev/portcullis/internal/token"
)

// Recorder commits audit events: Record waits until the event is durable
// (before a credential is released), Submit queues it.
type Recorder interface {
	Record(ctx context.Context, e *audit.Event) error
	Submit(e *audit.Event) error
}

// Decider decides delegations by policy.
type Decider interface {
	Decide(in *policy.Input) policy.Decision
}

// Budgets are the task call budgets the gateway enforces: what a task has
// left, and a reservation of n calls of it for a delegated token.
type Budgets interface {
	Left(ctx context.Context, tokenID string, budget int) (int, error)
	Reserve(ctx context.Context, tokenID string, budget, n int) (int, bool, error)
}

// Enrolment is where join tokens are spent and agent instances recorded.
type Enrolment interface {
	UseJoinToken(ctx context.Context, tok string, now time.Time) (string, error)
	PutInstance(ctx context.Context, in store.Instance) error
}

// Options are what the endpoints need from the gateway.
type Options struct {
	Config      *config.Config
	Ops         *ops.Ops          // the operator API's operations, over the gateway's store
	Key         *token.SigningKey // signs tokens; its public half is the JWKS
	CA          *identity.CA      // issues SVIDs
	Authn       *authn.Authenticator
	Revocations *authn.Revocations
	Enrolment   Enrolment
	Recorder    Recorder
	Decider     Decider
	Budgets     Budgets
	// Authorizations lists the upstream authorizations waiting for an
	// operator (nil: none can).
	Authorizations func() any
	// Release lifts the response's containment of a session (or, with
	// session "", of an agent's sessions); by is the admin.
	Release func(session, agent, by string)
	Log     *slog.Logger
}

// Server serves the endpoints.
type Server struct {
	cfg     *config.Config
	ops     *ops.Ops
	key     *token.SigningKey
	ca      *identity.CA
	authn   *authn.Authenticator
	revs    *authn.Revocations
	store   Enrolment
	rec     Recorder
	decider Decider
	budgets Budgets
	authzs  func() any
	release func(session, agent, by string)
	log     *slog.Logger
}

// New returns a server over o.
func New(o Options) *Server {
	return &Server{cfg: o.Config, ops: o.Ops, key: o.Key, ca: o.CA, authn: o.Authn, revs: o.Revocations,
		store: o.Enrolment, rec: o.Recorder, decider: o.Decider, budgets: o.Budgets, authzs: o.Authorizations, release: o.Release, log: o.Log}
}

// AgentRoutes registers the agent listener's endpoints on mux.
func (s *Server) AgentRoutes(mux *http.ServeMux) {
	mux.HandleFunc("/.well-known/jwks.json", s.serveJWKS)
	mux.HandleFunc("GET "+authn.ProtectedResourcePath, s.serveResourceMetadata)
	mux.HandleFunc("GET /.well-known/oauth-protected-resource", s.serveResourceMetadata)
	mux.HandleFunc("POST /oauth/token", s.serveTokenExchange)
	mux.HandleFunc("POST /v1/enrol", s.serveEnrol)
	mux.HandleFunc("POST /v1/svid/rotate", s.serveRotate)
	mux.HandleFunc("GET /v1/bundle", s.serveBundle)
}

// submit queues an event; a lost one is logged (the refusal it records
// stands either way).
func (s *Server) submit(e *audit.Event) {
	if err := s.rec.Submit(e); err != nil {
		s.log.Error("audit event lost", "type", e.Type, "err", err)
	}
}
