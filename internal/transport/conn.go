package transport

import (
	"context"
	"errors"

	"github.com/portcullis-dev/portcullis/internal/wire"
)

// Errors a Conn returns. The caller maps each to a clean error for the agent.
var (
	// ErrClosed: the connection ended (the server exited, the session
	// expired, or Close was called). Open a new one.
	ErrClosed = errors.New("upstream connection closed")
	// ErrNoResponse: the server ended its answer without responding.
	ErrNoResponse = errors.New("upstream ended the exchange without a response")
	// ErrProtocol: the server sent something that is not a valid answer.
	ErrProtocol = errors.New("upstream protocol error")
)

// Conn is one MCP session's message stream to a server.
type Conn interface {
	// RoundTrip sends req, a request whose id is unique on this connection,
	// and returns the server's response (a result or an error message).
	// Messages the server sends in relation to the request before it
	// answers (progress, log messages, requests to the client) are passed
	// to related, in order, in the calling goroutine. Over stdio, where the
	// transport cannot tell, a progress notification is related when it
	// carries the request's progress token.
	RoundTrip(ctx context.Context, req *wire.Message, related func(*wire.Message)) (*wire.Message, error)
	// Send sends a notification, or a response to a request of the server.
	Send(ctx context.Context, msg []byte) error
	// Listen starts delivering, in order, the messages the server sends
	// outside any request (list changes, resource updates, its own
	// requests) to fn, from one goroutine, until the connection ends.
	// Over HTTP this opens the standalone GET stream. Call it at most once.
	Listen(fn func(*wire.Message))
	// Negotiated tells the connection the protocol version initialize
	// agreed, which HTTP sends as a header on every later request.
	Negotiated(version string)
	// Close ends the session (over HTTP, with DELETE) and releases it.
	Close() error
	// Done is closed when the connection has ended.
	Done() <-chan struct{}
}

// Dialer opens a new connection (starting a process, for stdio).
type Dialer func(ctx context.Context) (Conn, error)
