package mcpproxy

import (
	"encoding/json"
	"hash/maphash"
	"slices"
	"sync"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/portcullis-dev/portcullis/internal/screen"
)

// Argument provenance. The gateway remembers, per session, the values that
// identify where data goes (email addresses, URL hosts, IBANs, long numbers
// such as account and phone numbers) and whether it first saw each one in
// untrusted output. A call argument carrying such a value is flagged to
// policy as untrusted (context.untrusted_arguments): the classic injected
// "send the report to attacker@evil.test" or "pay to this IBAN" then needs
// whatever the policy says, typically a human.
//
// First sight decides: a value already seen in trusted output stays
// trusted, and one first seen in untrusted output stays untrusted however
// often it comes back. Call arguments are never an origin, so a compromised
// agent cannot launder a value by mentioning it first.

// Provenance bounds.
const (
	maxOrigins      = 4096    // remembered values per session (oldest forgotten first)
	maxScannedBytes = 1 << 20 // text scanned per result
)

var originSeed = maphash.MakeSeed()

// origins remembers where a session first saw each indicator. Keys are
// 64-bit hashes (the values themselves are not kept).
type origins struct {
	mu        sync.Mutex
	untrusted map[uint64]bool
	order     []uint64 // insertion order, for forgetting the oldest
}

// observe records the indicators in the text of a result read from a source
// that is untrusted or not.
func (o *origins) observe(texts []string, untrusted bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.untrusted == nil {
		o.untrusted = map[uint64]bool{}
	}
	for _, t := range texts {
		if len(t) > maxScannedBytes {
			t = t[:maxScannedBytes]
		}
		// Normalised first: an address hidden from a scan by zero-width
		// characters, entities or base64 is still read by the model.
		screen.Destinations(screen.Normalize(t).Text, func(v string) {
			h := maphash.String(originSeed, v)
			if _, seen := o.untrusted[h]; seen {
				return
			}
			if len(o.order) >= maxOrigins {
				delete(o.untrusted, o.order[0])
				o.order = o.order[1:]
			}
			o.untrusted[h] = untrusted
			o.order = append(o.order, h)
		})
	}
}

// untrustedArguments returns the names of the top-level arguments whose
// values carry an indicator first seen in untrusted output, sorted.
func (o *origins) untrustedArguments(raw json.RawMessage) []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.untrusted) == 0 || len(raw) == 0 {
		return nil
	}
	var args map[string]json.RawMessage
	if json.Unmarshal(raw, &args) != nil {
		return nil
	}
	var out []string
	for name, v := range args {
		tainted := false
		var walk func(any)
		walk = func(x any) {
			switch x := x.(type) {
			case string:
				screen.Destinations(screen.Normalize(x).Text, func(v string) {
					if o.untrusted[maphash.String(originSeed, v)] {
						tainted = true
					}
				})
			case []any:
				for _, e := range x {
					walk(e)
				}
			case map[string]any:
				for _, e := range x {
					walk(e)
				}
			}
		}
		var x any
		if json.Unmarshal(v, &x) == nil {
			walk(x)
		}
		if tainted {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// resultTexts returns the text an agent would read in a result.
func resultTexts(res mcp.Result) []string {
	var out []string
	content := func(cs []mcp.Content) {
		for _, c := range cs {
			switch c := c.(type) {
			case *mcp.TextContent:
				out = append(out, c.Text)
			case *mcp.EmbeddedResource:
				if c.Resource != nil {
					out = append(out, c.Resource.Text)
				}
			}
		}
	}
	switch r := res.(type) {
	case *mcp.CallToolResult:
		content(r.Content)
		if r.StructuredContent != nil {
			if b, err := json.Marshal(r.StructuredContent); err == nil {
				out = append(out, string(b))
			}
		}
	case *mcp.ReadResourceResult:
		for _, c := range r.Contents {
			if c != nil {
				out = append(out, c.Text)
			}
		}
	case *mcp.GetPromptResult:
		for _, m := range r.Messages {
			if m != nil {
				content([]mcp.Content{m.Content})
			}
		}
	}
	return out
}
