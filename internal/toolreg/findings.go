package toolreg

import (
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"unicode"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Deterministic findings on a tool definition. They block automatic
// approval (trust on first use) and are shown with the quarantine reason.
// They are the checks that need no model: content screening's injection
// detectors will add the judgement of what the text asks the model to do.

var (
	hiddenTag     = regexp.MustCompile(`(?i)<\s*/?\s*(important|system|instructions?|secret|hidden|admin)\b`)
	sensitivePath = regexp.MustCompile(`(?i)(~/\.ssh|\bid_(rsa|ed25519|ecdsa)\b|/etc/(passwd|shadow)|~/\.aws|\.env\b|~/\.config/gcloud|\bmcp\.json\b)`)
)

// Findings returns what is suspicious in t: hidden-instruction markup,
// invisible or bidirectional characters, terminal escapes, references to
// sensitive files, and mentions of other servers' tools (shadowing). others
// maps tool names of other upstreams to their upstream.
func Findings(t *mcp.Tool, others map[string]string) []string {
	texts := map[string]string{"description": t.Description, "title": t.Title}
	collectSchemaText(t.InputSchema, "input schema", texts)
	set := map[string]bool{}
	for where, s := range texts {
		if s == "" {
			continue
		}
		if hiddenTag.MatchString(s) {
			set["hidden-instruction markup in the "+where] = true
		}
		if hasInvisible(s) {
			set["invisible or bidirectional characters in the "+where] = true
		}
		if strings.ContainsRune(s, '\x1b') {
			set["terminal escape sequences in the "+where] = true
		}
		if m := sensitivePath.FindString(s); m != "" {
			set[fmt.Sprintf("reference to a sensitive file (%s) in the %s", m, where)] = true
		}
		for name, up := range others {
			if mentions(s, name) {
				set[fmt.Sprintf("the %s mentions %s of upstream %s (shadowing)", where, name, up)] = true
			}
		}
	}
	out := make([]string, 0, len(set))
	for f := range set {
		out = append(out, f)
	}
	sort.Strings(out)
	return out
}

func hasInvisible(s string) bool {
	for _, r := range s {
		switch {
		case r >= 0xE0000 && r <= 0xE007F: // tag characters
			return true
		case unicode.Is(unicode.Cf, r) && r != '\u00ad': // format: zero-width, bidi controls
			return true
		}
	}
	return false
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
