// Package authserver is the gateway's built-in OAuth 2.1 authorization
// server, for small deployments and `serve --dev`: an MCP client (Claude
// Code, an IDE, an SDK agent) that finds no credential configured follows
// the gateway's 401 to its protected resource metadata, then here. It
// registers itself (dynamic client registration, RFC 7591: public clients
// with PKCE only), sends its person to sign in and consent, naming the
// agent the client will act as, and receives short-lived access tokens
// (JWT, ES256, audience the gateway's MCP endpoint) and rotating refresh
// tokens. The protocol is zitadel/oidc's OpenID provider; this package is
// its storage, the sign-in and consent page, registration and metadata.
//
// The gateway trusts the tokens as it trusts an external issuer's
// (internal/authn), with the signing key given in process rather than
// fetched. Clients, pending requests and refresh tokens are kept in
// memory: a restart signs everyone out. People are the configured users
// (a local account; in --dev one admin with a password printed at start).
package authserver
