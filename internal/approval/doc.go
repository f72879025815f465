// Package approval holds calls that policy says a human must approve.
//
// A policy asks for approval with a forbid annotated @approval("why"): when
// only such guards stand between a call and an allow, the call is held, a
// Request is stored, a notifier tells the reviewers, and the agent's request
// waits. A reviewer approves or denies (`portcullis approvals`); the
// approval is bound to the exact arguments (their SHA-256), single-use, and
// cannot come from the principal that asked (the agent, or the user it acts
// for). No decision before the request expires is a denial. With the
// "session" scope, an approval also lets the same agent call the same tool
// for the rest of that session (until the task tokens of the identity work
// scope it to a task).
//
// The Queue is safe for concurrent use; waiting polls the store, so a
// decision made by another process (the CLI) is seen within PollInterval.
package approval
