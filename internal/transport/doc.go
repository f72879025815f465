// Package transport carries MCP messages, as bytes, between the gateway and
// the servers behind it: streamable HTTP (with server-sent events, the
// standalone GET stream and resumption after a dropped stream), and
// newline-delimited JSON over a child process's stdio or an in-memory pipe.
//
// A Conn is one MCP session with one server. It does not interpret the
// protocol beyond what the transport needs: which response answers which
// request, which messages a server sends in relation to a request, the HTTP
// session and protocol-version headers. Every message it returns has been
// validated by wire.Parse; bytes a server sends that are not a valid
// message are dropped and counted, never passed on.
//
// Concurrency: a Conn's methods may be called from many goroutines. The
// function given to Listen runs in one goroutine owned by the Conn; the
// related callback of RoundTrip runs in the caller's goroutine, in the
// order the server sent the messages.
package transport
