// Package config reads the one versioned YAML file that configures Portcullis.
//
// Decoding is strict: unknown fields are errors, the version must match, and
// Validate reports every problem at once. Values that may be secrets (upstream
// headers, stdio environment) are references to an environment variable or a
// file; a value whose name looks like a secret and is written inline is
// rejected, so secrets never live in the configuration file or its history.
//
// A Config is immutable after Load returns; it is safe to share between
// goroutines.
package config
