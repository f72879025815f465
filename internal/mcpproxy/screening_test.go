package mcpproxy

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/screen"
)

// An upstream's own protocol error reaches the agent, so its text is
// screened like a result; the gateway's own errors pass unchanged.
func TestScreenUpstreamError(t *testing.T) {
	sc, err := screen.NewScreener(screen.DefaultRules())
	if err != nil {
		t.Fatal(err)
	}
	p := New(Options{Recorder: discardRecorder{}, Screener: sc, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: time.Now})
	c := &call{event: audit.NewEvent(audit.TypeDecision, time.Now())}
	u := &Upstream{Name: "files"}
	secret := "ghp_" + "R8mZ2qKx7TnW4vLc9YbP3sHd6JfA1uGe0QiO"

	got := p.screenError(context.Background(), c, u, &jsonrpc.Error{Code: -32000, Message: "bad config: token=" + secret})
	var je *jsonrpc.Error
	if !errors.As(got, &je) || strings.Contains(je.Message, secret) || !strings.Contains(je.Message, "[redacted:github-pat]") {
		t.Errorf("secret in an upstream error: %v", got)
	}
	clean := &jsonrpc.Error{Code: -32602, Message: "invalid params: path must be absolute"}
	if got := p.screenError(context.Background(), c, u, clean); got != clean {
		t.Errorf("clean error changed: %v", got)
	}
	own := denial("no_permit", "R1")
	if got := p.screenError(context.Background(), c, u, own); got != own {
		t.Errorf("the gateway's own denial changed: %v", got)
	}
	other := errors.New("transport closed")
	if got := p.screenError(context.Background(), c, u, other); got != other {
		t.Errorf("a non-protocol error changed: %v", got)
	}
}
