// Package metrics defines Portcullis' Prometheus metrics.
//
// Metrics live in a registry owned by the gateway (no global registration),
// so tests and multiple gateways in one process do not collide. All methods
// are safe on a nil *Metrics, which records nothing.
package metrics
