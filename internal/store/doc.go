// Package store persists Portcullis' state, in one of two databases behind
// one type (DB) and one set of statements:
//
//   - SQLite (pure Go, no cgo) in the data directory, the embedded default,
//     in WAL mode with synchronous=FULL: a write that returned has reached
//     the disk. SQLite serialises writers, so callers that write often
//     batch their writes (audit.Recorder's group commit through LogWriter).
//   - PostgreSQL (OpenPostgres), shared by the gateways of a fleet: the
//     audit log's sequencer is the row lock on its state; commits wait for
//     the database's disk, except the log's own asynchronous ones, which
//     SyncLog flushes; a change feed (Changes) announces changes to the
//     shared tables; Lease makes one gateway the holder of a duty.
//
// The schema is versioned (migrate.go): opening a store applies what it
// lacks and refuses a schema newer than the binary. Events are
// append-only: the store has no method that deletes an event row, and the
// only update (PruneBodies) keeps every leaf hash. The conformance suite
// (conformance_test.go) runs every test against both databases.
//
// A *DB is safe for concurrent use.
package store
