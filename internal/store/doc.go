// Package store persists Portcullis' state.
//
// The embedded backend is SQLite (pure Go, no cgo) in the data directory, in
// WAL mode with synchronous=FULL: a write that returned has reached the disk.
// Events are append-only: the store has no method that updates or deletes an
// event row. A later PostgreSQL backend implements the same methods.
//
// A *SQLite is safe for concurrent use; SQLite serialises writers, so callers
// that write often batch their writes (see audit.Recorder's group commit).
package store
