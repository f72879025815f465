package gateway

import (
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/portcullis-dev/portcullis/internal/screen"
)

// inspectTool is the tool registry's definition checks: content
// screening's, and shadowing of the other upstreams' tools.
func inspectTool(t *mcp.Tool, others map[string]string) []string {
	return screen.ToolFindings(screen.ToolDef{Name: t.Name, Title: t.Title, Description: t.Description, InputSchema: t.InputSchema}, others)
}
