// Package telemetry records OpenTelemetry spans for the gateway's stages and
// exports them over OTLP/HTTP (JSON encoding) when an endpoint is configured.
//
// Spans are telemetry, not audit: they are batched off the request path in a
// bounded queue, and when the queue is full a span is dropped and counted
// (Dropped), never blocking a call. Audit events, which must not be lost,
// go through package audit. Trace IDs are the W3C trace IDs the gateway
// records in audit events, so a trace and its audit events join on one ID.
//
// A nil *Tracer is valid and records nothing; all methods are safe for
// concurrent use.
package telemetry
