package screen

import (
	"fmt"
	"sort"
	"strings"
)

// ToolFindings is what blocks a tool definition's automatic approval in
// the tool registry, one readable line each, sorted: ScreenTool's findings
// (injection techniques, invisible characters, terminal escapes, sensitive
// paths, invocation steering, preference manipulation, out-of-scope
// parameters, harmful capabilities, exfiltration URLs) and shadowing of
// other upstreams' tools, whose names others maps to their upstream: text
// that mentions one of them, or a name dressed as a newer version of one.
func ToolFindings(t ToolDef, others map[string]string) []string {
	set := map[string]bool{}
	for _, f := range ScreenTool(t) {
		set[f.String()] = true
	}
	texts := map[string]string{"description": t.Description, "title": t.Title}
	schemaTexts(t.InputSchema, "input schema", texts, map[string]bool{})
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
	if o, ok := ShadowedName(t.Name, names); ok {
		set[fmt.Sprintf("%s in the name: %s imitates %s of upstream %s", RuleNameShadowing, t.Name, o, others[o])] = true
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
		before, after := j == 0 || !isNameByte(s[j-1]), j+len(tool) == len(s) || !isNameByte(s[j+len(tool)])
		if before && after {
			return true
		}
		i = j + 1
	}
}

// isNameByte is a byte a tool name can have next to the mention: \w or -.
func isNameByte(b byte) bool {
	return b == '_' || b == '-' || b >= '0' && b <= '9' || b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z'
}
