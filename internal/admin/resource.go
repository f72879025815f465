package admin

import (
	"net/http"

	"github.com/portcullis-dev/portcullis/internal/authn"
	"github.com/portcullis-dev/portcullis/internal/token"
)

// serveResourceMetadata publishes the MCP endpoint's protected resource
// metadata (RFC 9728), where the 401 challenge points: the resource's URL,
// how tokens are presented, the DPoP algorithms accepted, and the
// authorization servers whose tokens it accepts (config auth.external; its
// own tokens come from `portcullis token issue`, `task start` and the
// token exchange, which are not OAuth authorization servers).
func (s *Server) serveResourceMetadata(w http.ResponseWriter, r *http.Request) {
	algs := make([]string, len(token.DPoPAlgorithms))
	for i, a := range token.DPoPAlgorithms {
		algs[i] = string(a)
	}
	// The document at the well-known path without a suffix describes the
	// origin; the one with /mcp, the MCP endpoint (RFC 9728 §3.1).
	public := s.cfg.Listen.PublicURL
	resource := authn.BaseURL(r, public)
	if r.URL.Path == authn.ProtectedResourcePath {
		resource = authn.ResourceURL(r, public)
	}
	doc := map[string]any{
		"resource":                                   resource,
		"resource_name":                              "Portcullis MCP gateway",
		"bearer_methods_supported":                   []string{"header"},
		"dpop_signing_alg_values_supported":          algs,
		"tls_client_certificate_bound_access_tokens": true,
	}
	var servers []string
	for _, x := range s.cfg.Auth.External {
		servers = append(servers, x.Issuer)
	}
	if len(servers) > 0 {
		doc["authorization_servers"] = servers
	}
	if len(s.cfg.Auth.Scopes) > 0 {
		doc["scopes_supported"] = s.cfg.Auth.Scopes
	}
	w.Header().Set("Cache-Control", "max-age=300")
	// Public information, fetched by browser-based MCP clients too.
	w.Header().Set("Access-Control-Allow-Origin", "*")
	writeJSONResponse(w, http.StatusOK, doc)
}
