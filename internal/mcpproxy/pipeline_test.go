package mcpproxy

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestPipelinesMatchTheDocs: the order of every pipeline is a security
// invariant, written down in docs/architecture.md; the code and the table
// there must agree, method by method and stage by stage.
func TestPipelinesMatchTheDocs(t *testing.T) {
	b, err := os.ReadFile("../../docs/architecture.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	start, end := strings.Index(doc, "<!-- pipelines: begin -->"), strings.Index(doc, "<!-- pipelines: end -->")
	if start < 0 || end < start {
		t.Fatal("docs/architecture.md has no pipelines table")
	}
	row := regexp.MustCompile("^\\| `([^`]+)`[^|]*\\| ([a-z_ →]+) \\|$")
	documented := map[string]string{}
	for _, line := range strings.Split(doc[start:end], "\n") {
		if m := row.FindStringSubmatch(line); m != nil {
			documented[m[1]] = m[2]
		}
	}
	code := map[string]string{}
	for _, set := range []map[string][]stage{pipelines, serverPipelines} {
		for method, stages := range set {
			var names []string
			for _, st := range stages {
				names = append(names, st.name)
			}
			code[method] = strings.Join(names, " → ")
		}
	}
	for method, want := range code {
		if got, ok := documented[method]; !ok {
			t.Errorf("%s: not in the docs' table", method)
		} else if got != want {
			t.Errorf("%s: docs say %q, code runs %q", method, got, want)
		}
	}
	for method := range documented {
		if _, ok := code[method]; !ok {
			t.Errorf("%s: documented, but no pipeline in the code", method)
		}
	}
	// Every agent method has a pipeline or is a notification.
	for method := range agentMethods {
		if _, ok := pipelines[method]; !ok && !strings.HasPrefix(method, "notifications/") {
			t.Errorf("agent method %s has no pipeline", method)
		}
	}
}
