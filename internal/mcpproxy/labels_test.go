package mcpproxy

import (
	"slices"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/portcullis-dev/portcullis/internal/policy"
)

func TestSessionLabelsOnlyGrow(t *testing.T) {
	t.Parallel()
	var s sessionLabels
	if got := s.add([]string{"untrusted_input", "confidential"}); !slices.Equal(got, []string{"untrusted_input", "confidential"}) {
		t.Errorf("added %v", got)
	}
	if got := s.add([]string{"confidential"}); got != nil {
		t.Errorf("re-added %v", got)
	}
	l := s.list()
	if !slices.Equal(l, []string{"confidential", "untrusted_input"}) {
		t.Errorf("list = %v", l)
	}
	l[0] = "tampered"
	if s.list()[0] != "confidential" {
		t.Error("list shares the session's storage")
	}
	for i := 0; i < 2*maxSessionLabels; i++ {
		s.add([]string{string(rune('a'+i%26)) + string(rune('a'+i/26))})
	}
	if n := len(s.list()); n != maxSessionLabels {
		t.Errorf("%d labels kept, bound is %d", n, maxSessionLabels)
	}
}

func TestToolLabelsDefaults(t *testing.T) {
	t.Parallel()
	no, yes := false, true
	web, files := &Upstream{Name: "web"}, &Upstream{Name: "files"}
	entry := func(up *Upstream, name string, a *mcp.ToolAnnotations) *toolEntry {
		t := policy.Target{Kind: policy.KindTool, ID: up.Name + "__" + name, Upstream: up.Name, Destructive: true, OpenWorld: true}
		if a != nil && a.OpenWorldHint != nil {
			t.OpenWorld = *a.OpenWorldHint
		}
		return &toolEntry{up: up, qualified: up.Name + "__" + name, target: t}
	}
	p := New(Options{Labels: Labels{
		Upstreams: map[string][]string{"files": {"confidential"}},
		Tools:     map[string][]string{"files__public": {}},
	}})
	for _, tc := range []struct {
		e    *toolEntry
		want []string
	}{
		{entry(web, "fetch", nil), []string{LabelUntrustedInput}},                                        // no annotations: open world
		{entry(web, "fetch2", &mcp.ToolAnnotations{OpenWorldHint: &yes}), []string{LabelUntrustedInput}}, // declared open
		{entry(web, "calc", &mcp.ToolAnnotations{OpenWorldHint: &no}), nil},                              // declared closed
		{entry(files, "read", nil), []string{"confidential"}},                                            // upstream replaces default
		{entry(files, "public", nil), []string{}},                                                        // tool replaces upstream
	} {
		if got := p.toolLabels(tc.e); !slices.Equal(got, tc.want) {
			t.Errorf("%s: labels %v, want %v", tc.e.qualified, got, tc.want)
		}
	}
	if got := p.upstreamLabels(web); got != nil {
		t.Errorf("resources of an unlabelled upstream labelled %v", got)
	}
}
