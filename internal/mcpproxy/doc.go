// Package mcpproxy is the enforcement point: every MCP message between an
// agent and the servers behind the gateway passes here, and none reaches
// the other side unless its method's pipeline let it through.
//
// Messages travel as bytes. Each is parsed once, strictly (package wire),
// into a view that every stage reads; what is forwarded is the original
// bytes with only the edits the gateway must make (a served name back to the
// upstream's own, a gateway request ID, a progress token, a trace parent).
// Fields the gateway does not know pass unchanged; absent fields stay
// absent.
//
// Each method has one pipeline, an ordered list of stages fixed in code
// (pipeline.go); the order is a security invariant, written down in
// docs/architecture.md and checked against it by a test. The runner gives
// every stage a span and a latency metric and guarantees that a refusal is
// recorded in the audit log whichever stage refused, before the agent hears
// of it.
//
// Every agent session gets its own session with each upstream by default
// (config isolation "session"): state an upstream keeps per client never
// crosses agents or users. The upstream session is initialised with the
// agent's own protocol version and capabilities (those policy could ever
// allow), so the server offers the agent what it would offer it directly.
//
// Security model: deny by default. A message that cannot be parsed, a
// method not on the agent or server allow lists, a target the session's
// upstreams do not serve, a policy that errs, an audit log that cannot
// commit: each is refused, and the refusal is recorded. Upstream content is
// untrusted: results, errors, log messages and list entries are screened
// and bounded before an agent reads them.
//
// Concurrency: a Proxy is safe for concurrent use. Each agent request runs
// its pipeline in the goroutine that received it (the HTTP handler, or a
// goroutine per request on stdio); messages an upstream sends in relation
// to a request are written to that request's stream in the order received.
package mcpproxy
