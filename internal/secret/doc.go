// Package secret keeps upstream credentials (API keys, OAuth tokens) that
// Portcullis injects into upstream requests on the agents' behalf: agents
// never see them, and they never appear in logs, events or errors.
//
// Values are sealed with AES-256-GCM under a key in the data directory
// (keys/secrets.key, mode 0600), each with a fresh nonce and the secret's
// name as additional data (a sealed value cannot be moved to another name),
// and stored in the store. Value is a type whose String and formatting
// print a redaction, so a secret cannot slip into a log by accident.
package secret
