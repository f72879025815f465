package mcpproxy

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/screen"
)

// redactor masks the personal-data categories it was built with.
type redactor struct {
	categories []string
	counts     map[string]int
}

func (r *redactor) text(s string) string {
	var keep []screen.Finding
	for _, f := range screen.DetectPersonal(s) {
		if slices.Contains(r.categories, f.Rule) {
			keep = append(keep, f)
			r.counts[f.Rule]++
		}
	}
	return screen.Redact(s, keep)
}

// value redacts every string in a decoded JSON value.
func (r *redactor) value(v any) any {
	switch v := v.(type) {
	case string:
		return r.text(v)
	case []any:
		for i := range v {
			v[i] = r.value(v[i])
		}
	case map[string]any:
		for k := range v {
			v[k] = r.value(v[k])
		}
	}
	return v
}

// redact masks personal data of the given categories in res (text, embedded
// resources, structured content, resource contents) and returns how many
// of each it masked. Structured content that cannot be re-encoded is
// dropped rather than passed unscreened.
func redact(res mcp.Result, categories []string) map[string]int {
	r := &redactor{categories: categories, counts: map[string]int{}}
	switch res := res.(type) {
	case *mcp.CallToolResult:
		for _, c := range res.Content {
			switch c := c.(type) {
			case *mcp.TextContent:
				c.Text = r.text(c.Text)
			case *mcp.EmbeddedResource:
				if c.Resource != nil {
					c.Resource.Text = r.text(c.Resource.Text)
				}
			}
		}
		if res.StructuredContent != nil {
			var v any
			b, err := json.Marshal(res.StructuredContent)
			if err == nil {
				err = json.Unmarshal(b, &v)
			}
			if err != nil {
				res.StructuredContent = nil
			} else {
				res.StructuredContent = r.value(v)
			}
		}
	case *mcp.ReadResourceResult:
		for _, c := range res.Contents {
			if c != nil {
				c.Text = r.text(c.Text)
			}
		}
	}
	return r.counts
}

// redactResult applies the upstream's redaction and audits what was masked
// (categories and counts, never the values).
func (p *Proxy) redactResult(_ context.Context, c *call, u *Upstream, res mcp.Result) {
	cats := p.opts.Redact[u.Name]
	if len(cats) == 0 {
		return
	}
	counts := redact(res, cats)
	if len(counts) == 0 {
		return
	}
	var parts []string
	for cat, n := range counts {
		parts = append(parts, fmt.Sprintf("%s:%d", cat, n))
	}
	sort.Strings(parts)
	e := p.followUp(c, audit.TypeScreening, "redacted")
	e.Detail = "result: " + strings.Join(parts, " ")
	p.recordBackground(e)
}
