package authn

import (
	"net/http"
	"strings"

	"github.com/portcullis-dev/portcullis/internal/token"
)

// The 401 challenge, per RFC 6750 §3, RFC 9449 §7.1 and the protected
// resource metadata of RFC 9728 §5.1 (as the MCP authorization
// specification asks): it always points at the resource's metadata; it
// carries error="invalid_token" only when a credential was presented (a
// request without one is told where to look, not that it erred); a DPoP
// credential gets a DPoP challenge naming the proof algorithms.

// ProtectedResourcePath is where the resource's metadata is published for
// the MCP endpoint /mcp (RFC 9728 §3.1: the well-known prefix, then the
// resource's path).
const ProtectedResourcePath = "/.well-known/oauth-protected-resource/mcp"

// ResourceURL is the MCP endpoint at public (the configured public
// origin), or as the request reached it.
func ResourceURL(r *http.Request, public string) string { return BaseURL(r, public) + "/mcp" }

// ResourceMetadataURL is the resource's metadata document.
func ResourceMetadataURL(r *http.Request, public string) string {
	return BaseURL(r, public) + ProtectedResourcePath
}

// BaseURL is the gateway's origin: public when configured (a Host header
// cannot then point a client's metadata elsewhere), else as the request
// reached it. (Go's HTTP/1 server refuses a Host with quotes, spaces or
// controls; quote() guards the challenge anyway.)
func BaseURL(r *http.Request, public string) string {
	if public != "" {
		return strings.TrimRight(public, "/")
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// Challenge is the WWW-Authenticate value refusing r.
func Challenge(r *http.Request, public string, scopes []string) string {
	params := `realm="portcullis", resource_metadata="` + quote(ResourceMetadataURL(r, public)) + `"`
	if len(scopes) > 0 {
		params += `, scope="` + quote(strings.Join(scopes, " ")) + `"`
	}
	scheme, _, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	switch {
	case strings.EqualFold(scheme, "DPoP"):
		algs := make([]string, len(token.DPoPAlgorithms))
		for i, a := range token.DPoPAlgorithms {
			algs[i] = string(a)
		}
		return `DPoP ` + params + `, error="invalid_token", algs="` + strings.Join(algs, " ") + `"`
	case r.Header.Get("Authorization") == "":
		return `Bearer ` + params
	}
	return `Bearer ` + params + `, error="invalid_token"`
}

// ScopeChallenge is the WWW-Authenticate value of a 403 for a valid token
// without the scopes the resource requires (RFC 6750 §3.1).
func ScopeChallenge(r *http.Request, public string, scopes []string) string {
	return `Bearer realm="portcullis", resource_metadata="` + quote(ResourceMetadataURL(r, public)) +
		`", error="insufficient_scope", scope="` + quote(strings.Join(scopes, " ")) + `"`
}

// quote escapes a value for a quoted-string of an auth parameter.
func quote(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s)
}
