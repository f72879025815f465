package mcpproxy

import (
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

func TestRedactResult(t *testing.T) {
	t.Parallel()
	res := &mcp.CallToolResult{
		Content: []mcp.Content{
			&mcp.TextContent{Text: "card 4111 1111 1111 1111, mail jane@example.com"},
			&mcp.EmbeddedResource{Resource: &mcp.ResourceContents{Text: "ssn 078-05-1123"}},
		},
		StructuredContent: map[string]any{"customer": map[string]any{"card": "5555555555554444", "tags": []any{"vip"}}},
	}
	counts := redact(res, []string{"payment_card", "us_ssn"})
	if counts["payment_card"] != 2 || counts["us_ssn"] != 1 || counts["email"] != 0 {
		t.Errorf("counts = %v", counts)
	}
	text := res.Content[0].(*mcp.TextContent).Text
	if text != "card [redacted:payment_card], mail jane@example.com" {
		t.Errorf("text = %q", text)
	}
	if got := res.Content[1].(*mcp.EmbeddedResource).Resource.Text; got != "ssn [redacted:us_ssn]" {
		t.Errorf("embedded = %q", got)
	}
	sc := res.StructuredContent.(map[string]any)["customer"].(map[string]any)
	if sc["card"] != "[redacted:payment_card]" || sc["tags"].([]any)[0] != "vip" {
		t.Errorf("structured = %v", sc)
	}

	rr := &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{Text: "IBAN GB82 WEST 1234 5698 7654 32"}, nil}}
	if counts := redact(rr, []string{"iban"}); counts["iban"] != 1 || strings.Contains(rr.Contents[0].Text, "GB82") {
		t.Errorf("resource: %v %q", counts, rr.Contents[0].Text)
	}
	// Structured content that cannot be encoded is dropped, not passed on.
	bad := &mcp.CallToolResult{StructuredContent: func() {}}
	redact(bad, []string{"email"})
	if bad.StructuredContent != nil {
		t.Error("unencodable structured content passed unscreened")
	}
}
