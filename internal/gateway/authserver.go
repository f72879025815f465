package gateway

import (
	"crypto"
	"fmt"
	"path/filepath"
	"time"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/authserver"
	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/ops"
	"github.com/portcullis-dev/portcullis/internal/reason"
)

// startAuthorizationServer builds the built-in authorization server when
// configured, and makes its issuer one the MCP endpoint trusts (listed in
// the protected resource metadata, its tokens verified with its key in
// process): cfg.Auth.External gains it. It returns the issuer's key.
func (g *Gateway) startAuthorizationServer(cfg *config.Config) (map[string]crypto.PublicKey, error) {
	as := cfg.Auth.AuthorizationServer
	if as == nil {
		return nil, nil
	}
	issuer, err := cfg.AuthorizationServerIssuer()
	if err != nil && as.Optional {
		g.log.Warn("built-in authorization server not started", "why", err)
		cfg.Auth.AuthorizationServer = nil
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("auth.authorization_server: %w", err)
	}
	users := map[string]authserver.User{}
	for _, u := range as.Users {
		pw, err := u.Password.Resolve(cfg.Dir(), g.openSecret)
		if err != nil {
			return nil, fmt.Errorf("auth.authorization_server: user %s: %w", u.Name, err)
		}
		if len(pw) < config.MinLocalPassword {
			return nil, fmt.Errorf("auth.authorization_server: user %s: the password must have at least %d characters", u.Name, config.MinLocalPassword)
		}
		users[u.Name] = authserver.User{Password: pw, Agents: u.Agents}
	}
	agents := as.Agents
	if len(agents) == 0 && as.Optional { // --dev: its agents
		for _, a := range cfg.Agents {
			agents = append(agents, a.Name)
		}
	}
	var fed *authserver.Federation
	if f := as.Federation; f != nil {
		fed = &authserver.Federation{Issuer: f.Issuer, ClientID: f.ClientID, UserClaim: f.UserClaim}
		if f.ClientSecret != nil {
			if fed.ClientSecret, err = f.ClientSecret.Resolve(cfg.Dir(), g.openSecret); err != nil {
				return nil, fmt.Errorf("auth.authorization_server.federation: client secret: %w", err)
			}
		}
	}
	access := as.AccessTokenTTL.D()
	if access == 0 {
		access = min(authserver.DefaultAccessTTL, cfg.Auth.MaxTTL.D())
	}
	resource := issuer + "/mcp"
	g.authServer, err = authserver.New(authserver.Options{
		Issuer: issuer, Resource: resource, Agents: agents, Users: users, Federation: fed,
		KeyDir:    filepath.Join(g.dataDir, ops.KeysDir),
		AccessTTL: access, RefreshTTL: as.RefreshTokenTTL.D(), Scopes: cfg.Auth.Scopes,
		Log: g.log.With("component", "authorization-server"), Event: g.authServerEvent,
	})
	if err != nil {
		return nil, err
	}
	cfg.Auth.External = append(cfg.Auth.External, config.ExternalIssuer{
		Issuer: issuer, Audience: resource, Algorithms: []string{"ES256"}, AgentClaim: authserver.AgentClaim,
	})
	return map[string]crypto.PublicKey{issuer: g.authServer.PublicKey()}, nil
}

// AuthorizationServerURL is the built-in authorization server's issuer
// ("" when not configured).
func (g *Gateway) AuthorizationServerURL() string {
	if g.authServer == nil {
		return ""
	}
	u, _ := g.cfg.AuthorizationServerIssuer()
	return u
}

func (g *Gateway) authServerEvent(e authserver.Event) {
	code := map[string]reason.Code{
		authserver.EventClientRegistered: reason.ClientRegistered,
		authserver.EventConsented:        reason.AuthorizationConsented,
		authserver.EventRefused:          reason.SignInRefused,
	}[e.Kind]
	outcome := audit.OutcomeInfo
	if e.Deny {
		outcome = audit.OutcomeDeny
	}
	ev := audit.New(audit.TypeIdentity, outcome, code, time.Now(), audit.Subject{Agent: e.Agent, User: e.User})
	ev.Target, ev.Detail = e.Client, e.Detail
	g.submit(ev)
}
