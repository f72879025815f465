// Package oauthclient makes the gateway an OAuth 2.1 client of the
// upstreams that speak MCP authorization: credential brokering. Agents
// never hold an upstream's token; the gateway obtains it, keeps it sealed
// in its vault, renews it and puts it on its own requests to that upstream.
//
// The OAuth flows themselves are the MCP Go SDK's (auth and auth/extauth):
// discovery of the protected resource's metadata (RFC 9728) and of its
// authorization server (RFC 8414, OpenID Connect discovery, the 2025-03-26
// fallbacks), client ID metadata documents, pre-registered clients,
// dynamic client registration (RFC 7591), authorization code with PKCE and
// resource indicators (RFC 8707), step-up on insufficient_scope, and the
// client credentials grant. This package adds what a gateway needs around
// them:
//
//   - a Grant per upstream (and per user, for per_user upstreams) shared
//     by every connection that uses it;
//   - authorization flows that wait for a person: the request that needs
//     the authorization fails at once with an AuthorizationRequired error
//     naming the URL to visit, while the flow waits (FlowTTL) for the
//     authorization server to send the person back to the gateway's
//     callback (CallbackPath on the public URL), single use, bound to its
//     state;
//   - tokens sealed in the vault and restored at start, refreshed by the
//     oauth2 package and saved again when they change;
//   - an HTTP client for everything the upstream names (metadata,
//     authorization server): https only (http on loopback), no redirects,
//     bounded in time;
//   - an audit event for every authorization asked for, obtained or
//     failed.
//
// A grant that is not per user is the operator's: its URL goes to the log
// and the admin API, never to an agent (one person's authorization would
// otherwise serve everyone). A per-user grant's URL goes to the agent's
// client as a URL elicitation (-32042), since the person behind that
// session is the one who must authorize.
package oauthclient
