package replay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// upstream is a real MCP server (streamable HTTP on loopback) serving a
// suite's tools. The replay driver tells it, before each call, which tool
// is called next and what it returns: the recorded output, with the
// pair's attack text at its injection vectors.
type upstream struct {
	mu     sync.Mutex
	fn     string
	output string
	served int // calls that reached the upstream

	srv *http.Server
	ln  net.Listener
}

func startUpstream(s *Suite) (*upstream, error) {
	u := &upstream{}
	server := mcp.NewServer(&mcp.Implementation{Name: "agentdojo-" + s.Name, Version: "1.2.2"}, nil)
	for _, t := range s.Tools {
		schema := map[string]any{}
		if len(t.Parameters) > 0 {
			if err := json.Unmarshal(t.Parameters, &schema); err != nil {
				return nil, fmt.Errorf("tool %s: parameters: %w", t.Name, err)
			}
		}
		schema["type"] = "object"
		name := t.Name
		server.AddTool(&mcp.Tool{Name: name, Description: t.Description, InputSchema: schema}, func(_ context.Context, _ *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			out, err := u.answer(name)
			if err != nil {
				return &mcp.CallToolResult{IsError: true, Content: []mcp.Content{&mcp.TextContent{Text: err.Error()}}}, nil
			}
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: out}}}, nil
		})
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	u.ln = ln
	u.srv = &http.Server{Handler: mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, nil)}
	go u.srv.Serve(ln)
	return u, nil
}

// URL is the server's MCP endpoint.
func (u *upstream) URL() string { return "http://" + u.ln.Addr().String() + "/mcp" }

func (u *upstream) expect(fn, output string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.fn, u.output = fn, output
}

func (u *upstream) answer(fn string) (string, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if fn != u.fn {
		return "", fmt.Errorf("replay: %s called, %s expected", fn, u.fn)
	}
	u.served++
	u.fn = "" // one answer per expectation
	return u.output, nil
}

func (u *upstream) close() error {
	if u.srv == nil {
		return errors.New("not started")
	}
	return u.srv.Close()
}
