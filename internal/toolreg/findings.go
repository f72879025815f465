package toolreg

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/portcullis-dev/portcullis/internal/screen"
)

// Findings on a tool definition block automatic approval (trust on first
// use) and are shown with the quarantine reason. The text checks are
// content screening's (screen.ScreenTool: injection techniques, invisible
// characters, terminal escapes, sensitive paths, invocation steering,
// preference manipulation, out-of-scope parameters, harmful capabilities,
// exfiltration URLs); shadowing needs the other upstreams and is here.

// Findings returns what is suspicious in t, one readable line each. others
// maps tool names of other upstreams to their upstream.
func Findings(t *mcp.Tool, others map[string]string) []string {
	set := map[string]bool{}
	for _, f := range screen.ScreenTool(screen.ToolDef{Name: t.Name, Title: t.Title, Description: t.Description, InputSchema: t.InputSchema}) {
		set[f.String()] = true
	}
	texts := map[string]string{"description": t.Description, "title": t.Title}
	collectSchemaText(t.InputSchema, "input schema", texts)
	for where, s := range texts {
		for name, up := range others {
			if s != "" && mentions(s, name) {
				set[fmt.Sprintf("the %s mentions %s of upstream %s (shadowing)", where, name, up)] = true
			}
		}
	}
	names := make([]string, 0, len(others))
	for n := range others {
		names = append(names, n)
	}
	sort.Strings(names)
	if o, ok := screen.ShadowedName(t.Name, names); ok {
		set[fmt.Sprintf("%s in the name: %s imitates %s of upstream %s", screen.RuleNameShadowing, t.Name, o, others[o])] = true
	}
	out := make([]string, 0, len(set))
	for f := range set {
		out = append(out, f)
	}
	sort.Strings(out)
	return out
}

// mentions reports whether s names tool as a word; only distinctive names
// (with a separator, six characters or more) count, so "read" or "search"
// in prose are not shadowing.
func mentions(s, tool string) bool {
	if len(tool) < 6 || !strings.ContainsAny(tool, "_-.") {
		return false
	}
	for i := 0; ; {
		j := strings.Index(s[i:], tool)
		if j < 0 {
			return false
		}
		j += i
		before, after := j == 0 || !isWordByte(s[j-1]), j+len(tool) == len(s) || !isWordByte(s[j+len(tool)])
		if before && after {
			return true
		}
		i = j + 1
	}
}

func isWordByte(b byte) bool {
	return b == '_' || b == '-' || b >= '0' && b <= '9' || b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z'
}

// collectSchemaText gathers descriptions and titles anywhere in a schema:
// fields can smuggle instructions too.
func collectSchemaText(schema any, where string, into map[string]string) {
	b, err := json.Marshal(schema)
	if err != nil {
		return
	}
	var v any
	if json.Unmarshal(b, &v) != nil {
		return
	}
	var parts []string
	var walk func(any, int)
	walk = func(x any, depth int) {
		if depth > 32 {
			return
		}
		switch m := x.(type) {
		case map[string]any:
			for k, e := range m {
				if s, ok := e.(string); ok && (k == "description" || k == "title") {
					parts = append(parts, s)
				}
				walk(e, depth+1)
			}
		case []any:
			for _, e := range m {
				walk(e, depth+1)
			}
		}
	}
	walk(v, 0)
	if len(parts) > 0 {
		into[where] = strings.Join(parts, "\n")
	}
}
