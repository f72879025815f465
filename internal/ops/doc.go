// Package ops is what the CLI does to a gateway's data directory, beside a
// running gateway or without one: approvals, grants, tool pins and
// manifests, tokens and tasks, join tokens and instances, revocations,
// secrets, audit checkpoints and pruning, decision replays. The daemon
// shares the operations its admin API offers (deciding approvals,
// starting tasks) through the same type, over its own store.
//
// Every operation that changes state appends the audit event recording it
// first, in the same store: a change that could not be recorded is not
// made. A running gateway sees a change within its refresh interval
// (revocations, grants, pins, approvals are read from the store).
//
// An Ops is safe for concurrent use as far as its store is (SQLite in WAL
// mode, one writer at a time).
package ops
