package reason

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// constants returns the Code constants declared in file, by value.
func constants(t *testing.T, file string) []Code {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), file, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []Code
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, s := range g.Specs {
			for _, v := range s.(*ast.ValueSpec).Values {
				if lit, ok := v.(*ast.BasicLit); ok {
					s, _ := strconv.Unquote(lit.Value)
					out = append(out, Code(s))
				}
			}
		}
	}
	return out
}

// TestAgentVisibleIsComplete: the list holds every refusal declared in
// codes.go, each once.
func TestAgentVisibleIsComplete(t *testing.T) {
	declared := constants(t, "codes.go")
	if len(declared) < 30 {
		t.Fatalf("found %d codes in codes.go", len(declared))
	}
	listed := slices.Clone(AgentVisible)
	slices.Sort(declared)
	slices.Sort(listed)
	if !slices.Equal(declared, listed) {
		t.Errorf("AgentVisible %v\ndeclared     %v", listed, declared)
	}
	if len(slices.Compact(listed)) != len(AgentVisible) {
		t.Error("a code is listed twice")
	}
}

// TestCodesAreDocumented: docs/audit-events.md explains every code an
// agent can see in its table of them, and names every event code.
func TestCodesAreDocumented(t *testing.T) {
	b, err := os.ReadFile("../../docs/audit-events.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	i := strings.Index(doc, "## Reason codes an agent can see")
	if i < 0 {
		t.Fatal("docs/audit-events.md has no section on the codes an agent can see")
	}
	agentSection := doc[i:]
	if j := strings.Index(agentSection[3:], "\n## "); j >= 0 {
		agentSection = agentSection[:j+3]
	}
	for _, c := range AgentVisible {
		if !strings.Contains(agentSection, "`"+string(c)+"`") {
			t.Errorf("agent-visible code %s is not in the docs' table", c)
		}
	}
	for _, c := range constants(t, "events.go") {
		if !strings.Contains(doc, "`"+string(c)+"`") && !strings.Contains(doc, "`code: "+string(c)+"`") {
			t.Errorf("event code %s is not documented", c)
		}
	}
}
