// Package identity defines who is on the other end of a request.
//
// A Principal is produced only by an authenticator (today: a verified agent
// token; later: an X.509-SVID over mTLS and task tokens) and is immutable once
// built. Everything downstream (policy, audit, the proxy) trusts a Principal
// precisely because nothing else can construct one from request bytes.
package identity
