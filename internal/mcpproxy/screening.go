package mcpproxy

import (
	"context"
	"encoding/json"
	"errors"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/screen"
)

// ReasonScreeningBlocked is the denial of a call whose arguments a
// screening rule blocks (a secret leaving, by default).
const ReasonScreeningBlocked = "screening_blocked"

// Screening outcome codes of `screening` audit events, most severe first.
const (
	screenBlocked  = "blocked"
	screenWithheld = "withheld"
	screenRedacted = "redacted"
	screenLabelled = "labelled"
	screenFlagged  = "flagged"
)

// screeningCode is the most severe outcome of v, for the audit event.
func screeningCode(v *screen.Verdict) string {
	switch {
	case v.Block:
		return screenBlocked
	case v.Withhold:
		return screenWithheld
	case v.Has(screen.ActionRedact):
		return screenRedacted
	case len(v.Labels) > 0:
		return screenLabelled
	default:
		return screenFlagged
	}
}

// screenArguments screens a call's arguments (the JSON text as sent). It
// remembers the secrets and personal data it acted on, so that the
// decision's audit record masks them.
func (p *Proxy) screenArguments(c *call, upstream string, raw []byte) screen.Verdict {
	if p.opts.Screener == nil {
		return screen.Verdict{}
	}
	v := p.opts.Screener.Scan(screen.DirArguments, upstream, string(raw))
	for _, d := range v.Detections {
		if d.Located && (d.Category == screen.CategorySecret || d.Category == screen.CategoryPersonal) {
			c.argMask = append(c.argMask, d.Finding)
		}
	}
	return v
}

// auditArgs are the arguments as the decision's audit record holds them:
// screened secrets and personal data masked first.
func (c *call) auditArgs() json.RawMessage {
	if len(c.argMask) == 0 {
		return c.rawArgs
	}
	return json.RawMessage(screen.RedactSpans(string(c.rawArgs), c.argMask))
}

// recordScreening records what screening in direction dir acted on, and
// applies its labels to the session. It never records the content.
func (p *Proxy) recordScreening(ctx context.Context, c *call, dir string, v *screen.Verdict) {
	if len(v.Detections) == 0 {
		return
	}
	p.label(ctx, c, v.Labels)
	e := p.followUp(c, audit.TypeScreening, screeningCode(v))
	e.Detail = dir + ": " + v.Summary()
	if len(v.Steps) > 0 {
		e.Detail += " (decoded: " + strings.Join(v.Steps, ",") + ")"
	}
	e.Labels = v.Labels
	p.recordBackground(e)
	if p.opts.Metrics != nil {
		for _, d := range v.Detections {
			p.opts.Metrics.Screened(dir, d.Category, d.Action)
		}
	}
}

// screenResult screens every text of a result from u and applies the
// verdict: redactions masked, texts that cannot be masked withheld, and a
// blocked result replaced by an error the agent can read.
func (p *Proxy) screenResult(ctx context.Context, c *call, u *Upstream, res mcp.Result) {
	if p.opts.Screener == nil {
		return
	}
	var all screen.Verdict
	dir := screen.DirResult
	if _, ok := res.(*mcp.GetPromptResult); ok {
		dir = screen.DirPrompt
	}
	rewriteTexts(res, func(s string) string {
		v := p.opts.Screener.Scan(dir, u.Name, s)
		all.Merge(v)
		switch {
		case v.Block:
			return s // replaced below
		case v.Withhold:
			return "[portcullis: text withheld by screening: " + strings.Join(v.Keys(), ", ") + "]"
		default:
			return v.Redacted(s)
		}
	})
	if all.Block {
		msg := "[portcullis: result withheld by screening: " + strings.Join(all.Keys(), ", ") + "]"
		rewriteTexts(res, func(string) string { return msg })
		if r, ok := res.(*mcp.CallToolResult); ok {
			r.Content = []mcp.Content{&mcp.TextContent{Text: msg}}
			r.StructuredContent = nil
			r.IsError = true
		}
	}
	p.recordScreening(ctx, c, screen.DirResult, &all)
}

// screenError screens the message and data of an upstream's own protocol
// error, which the relay passes on: an error text is content the upstream
// wrote, like a result. The gateway's own errors carry no upstream text
// and pass unchanged.
func (p *Proxy) screenError(ctx context.Context, c *call, u *Upstream, err error) error {
	var werr *jsonrpc.Error
	if p.opts.Screener == nil || !errors.As(err, &werr) || werr.Code == CodeDenied || werr.Code == CodeUnavailable {
		return err
	}
	text := werr.Message
	if len(werr.Data) > 0 {
		text += "\n" + string(werr.Data)
	}
	v := p.opts.Screener.Scan(screen.DirResult, u.Name, text)
	if len(v.Detections) == 0 {
		return err
	}
	// The data joins the message, masked; what cannot be masked in place
	// withholds both.
	out := &jsonrpc.Error{Code: werr.Code, Message: v.Redacted(text)}
	if v.Block || v.Withhold {
		out.Message = "[portcullis: upstream error withheld by screening: " + strings.Join(v.Keys(), ", ") + "]"
	}
	p.recordScreening(ctx, c, screen.DirResult, &v)
	return out
}

// rewriteTexts replaces every text an agent would read in res (tool
// result text and embedded resources, structured content strings,
// resource contents, prompt messages) by fn of it. Structured content that
// cannot be re-encoded is dropped rather than passed unscreened.
func rewriteTexts(res mcp.Result, fn func(string) string) {
	content := func(cs []mcp.Content) {
		for _, c := range cs {
			switch c := c.(type) {
			case *mcp.TextContent:
				c.Text = fn(c.Text)
			case *mcp.EmbeddedResource:
				if c.Resource != nil && c.Resource.Text != "" {
					c.Resource.Text = fn(c.Resource.Text)
				}
			}
		}
	}
	switch r := res.(type) {
	case *mcp.CallToolResult:
		content(r.Content)
		if r.StructuredContent != nil {
			var v any
			b, err := json.Marshal(r.StructuredContent)
			if err == nil {
				err = json.Unmarshal(b, &v)
			}
			if err != nil {
				r.StructuredContent = nil
			} else {
				r.StructuredContent = rewriteValue(v, fn)
			}
		}
	case *mcp.ReadResourceResult:
		for _, c := range r.Contents {
			if c != nil && c.Text != "" {
				c.Text = fn(c.Text)
			}
		}
	case *mcp.GetPromptResult:
		for _, m := range r.Messages {
			if m != nil {
				content([]mcp.Content{m.Content})
			}
		}
	}
}

func rewriteValue(v any, fn func(string) string) any {
	switch v := v.(type) {
	case string:
		return fn(v)
	case []any:
		for i := range v {
			v[i] = rewriteValue(v[i], fn)
		}
	case map[string]any:
		for k := range v {
			v[k] = rewriteValue(v[k], fn)
		}
	}
	return v
}
