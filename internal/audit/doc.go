// Package audit records what Portcullis decided and did.
//
// Audit is not logging: every event is typed (see docs/audit-events.md), is
// written to the store before the action it describes is answered, and an
// event's outcome starts as deny and is set to allow only when the action
// was allowed. The Recorder batches concurrent writers into one transaction
// (group commit), so durability costs one fsync per batch, not per call.
//
// If the store cannot take an event (queue full, store down, shutdown), Record
// returns an error and the caller denies the action it was about to take:
// nothing happens that is not recorded.
//
// A Recorder is safe for concurrent use. Run owns the single writer goroutine.
package audit
