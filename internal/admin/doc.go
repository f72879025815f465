// Package admin serves Portcullis' HTTP endpoints other than MCP. On the
// agent listener (AgentRoutes): the token-verification keys (JWKS), OAuth
// 2.0 token exchange for delegation (RFC 8693, narrowing only), SVID
// enrolment with a one-time join token, SVID rotation over mutual TLS and
// the trust bundle. On the admin listener (OperatorHandler): the operator
// API for approvals and tasks, behind admin tokens.
//
// Every request that changes something or is refused is audited, naming
// the agent or admin; what the operator API changes goes through package
// ops, as the CLI's commands do. Bodies are bounded (MaxAdminBody,
// maxEnrolBody).
package admin
