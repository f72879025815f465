// Package authn authenticates agents at the gateway: agent tokens
// (Bearer), task tokens bound to the agent's key (DPoP, RFC 9449, or a
// mutual-TLS client certificate, RFC 8705), and X.509-SVIDs of the agent
// CA's trust domain or of federated trust domains mapped to agents.
//
// Every credential must name a configured agent and must not be revoked:
// revocations are read from the store every RevocationRefresh and, until
// they have been read once, everything counts as revoked (fail closed).
// Signature checks are cached per token (by its hash) until the token
// expires; proofs of possession are checked on every request.
//
// An Authenticator is safe for concurrent use.
package authn
