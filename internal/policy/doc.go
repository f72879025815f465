// Package policy decides every request with Cedar.
//
// Deny is the default: a request is allowed only when at least one permit
// policy is satisfied and no forbid policy is. A policy that errors while
// evaluating (a missing attribute, a type error) is treated by Cedar as not
// satisfied; Portcullis additionally denies any request during which a forbid
// policy errored, so a broken guard fails closed instead of silently lapsing.
//
// Policies are loaded as a Set, validated against the embedded schema, and
// identified by a version: the SHA-256 of their sources. An Engine swaps Sets
// atomically, so a reload never exposes a half-loaded bundle and a rejected
// bundle leaves the last good one serving.
//
// Decide and Visible are safe for concurrent use and do not block.
package policy
