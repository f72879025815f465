// Package token mints and verifies short-lived agent tokens.
//
// Tokens are compact JWS (EdDSA over Ed25519) with a dedicated "typ" so they
// cannot be confused with other JWTs, an issuer, an audience naming the
// gateway, a unique ID, and a lifetime that Verify refuses if it exceeds the
// configured maximum, whatever the signature says. Only EdDSA is accepted;
// the key ID must match the gateway's signing key.
//
// The signing key lives in the data directory (mode 0600) and is generated on
// first use. An Issuer and a Verifier are safe for concurrent use.
package token
