// Package reason names every code that explains an audited outcome: why a
// request was refused (codes.go: the codes an agent can see, in the
// reason of a JSON-RPC error and in the audit log) and what happened in
// events that are not refusals (events.go: lifecycle, supply chain,
// identity, ...). docs/audit-events.md documents each one; a test keeps
// the two in step.
//
// The package is a leaf: policy, budgets, the proxy, the gateway and the
// audit log all speak this vocabulary without depending on each other.
package reason
