// Package grant holds just-in-time privileges: an operator lets one agent
// call one tool for a bounded time, with a reason. A grant can only add a
// permission that no policy gives; a forbid policy still wins over it. Grants
// expire by themselves; creating, revoking and expiring one is audited.
//
// The gateway keeps a Cache of active grants, refreshed from the store, so
// that checking one costs a map lookup on the hot path. Expiry is checked
// against the clock at every use, so a grant is never honoured past its end,
// whatever the refresh interval; a revocation takes effect at the next
// refresh (at most RefreshInterval).
package grant
