// Package demo is the built-in upstream MCP server of `portcullis serve --dev`.
//
// It offers a few realistic tools over a demo folder: listing, reading and
// searching files, and sending a message (appended to an outbox file in the
// folder; nothing leaves the machine). Paths are confined to the folder:
// absolute paths, "..", and symlinks that leave it are refused.
package demo
