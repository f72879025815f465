// Package outbound is the gateway's one HTTP client for what it sends out
// of its own accord: audit export (webhooks, OTLP logs), checkpoint
// witnesses, approval notifications and trace export. Every such request
// gets the same treatment: a timeout per attempt, a bounded number of
// retries with exponential backoff on transient failures (network errors,
// 408, 425, 429, 5xx; Retry-After honoured up to the backoff cap), TLS 1.2
// or later, the proxy from the environment (HTTPS_PROXY, NO_PROXY), and no
// redirects: a destination's credentials never follow a redirect elsewhere.
//
// A Client is safe for concurrent use.
package outbound
