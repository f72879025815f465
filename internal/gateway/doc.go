// Package gateway wires the Portcullis daemon together: configuration, keys,
// store, audit recorder, policy engine, upstreams, the agent-facing listener
// and the admin listener (its API shares package ops' operations). It is
// the only package that knows all the others. What commands do to a data
// directory without the daemon is package ops.
//
// Shutdown is ordered so that nothing is lost: the agent listener stops
// accepting, in-flight calls drain (bounded by limits.shutdown_grace), the
// upstreams stop, and only then does the audit recorder flush and the store
// close. Every event of every answered call is therefore on disk.
package gateway
