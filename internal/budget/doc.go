// Package budget bounds how fast and how repetitively an agent can call
// tools: a per-agent rate (token bucket) and a breaker that opens when the
// same call (agent, tool, arguments) repeats too often, denying that tool to
// that agent for a cool-down. They are friction against runaway loops and
// amplification, not a barrier against a determined attacker, who can vary
// arguments or pace calls; policy is the barrier.
//
// A Keeper is safe for concurrent use; its memory is bounded (MaxKeys).
package budget
