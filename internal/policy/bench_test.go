package policy

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-dev/portcullis/internal/identity"
)

// realisticBundle is 40 agents' worth of policies over 6 upstreams of 8
// tools each: role permits per upstream, argument constraints per tool,
// per-agent forbids, and the shared guards of examples/policies. It has
// several hundred policies.
func realisticBundle(tb testing.TB) (*Engine, []*Input) {
	var b strings.Builder
	ups := []string{"files", "git", "crm", "tickets", "bank", "search"}
	for r := 0; r < 20; r++ {
		for _, u := range ups {
			fmt.Fprintf(&b, "@id(\"role%d-%s-read\") permit (principal in Role::\"role%d\", action == Action::\"call_tool\", resource in Upstream::\"%s\") when { resource.classification.contains(\"read_only\") };\n", r, u, r, u)
		}
		for t := 0; t < 8; t++ {
			fmt.Fprintf(&b, "@id(\"role%d-write%d\") permit (principal in Role::\"role%d\", action == Action::\"call_tool\", resource == Tool::\"files__write%d\") when { context.arguments has path && context.arguments.path like \"/work/role%d/*\" && !(context.arguments.path like \"*..*\") };\n", r, t, r, t, r)
		}
	}
	for a := 0; a < 40; a++ {
		fmt.Fprintf(&b, "@id(\"agent%d-no-bank\") forbid (principal == Agent::\"agent%d\", action == Action::\"call_tool\", resource in Upstream::\"bank\") when { context.risk_score > 50 };\n", a, a)
	}
	b.WriteString(`@id("lethal") forbid (principal, action == Action::"call_tool", resource) when { resource.classification.contains("sends_externally") && context.session.labels.contains("untrusted_input") && context.session.labels.contains("confidential") };
@id("no-creds") forbid (principal, action == Action::"call_tool", resource in Upstream::"files") when { context.arguments has path && (context.arguments.path like "*/.ssh/*" || context.arguments.path like "*/.env") };
@id("hours") forbid (principal, action == Action::"call_tool", resource) when { resource.classification.contains("moves_money") } unless { context.time.hour >= 8 && context.time.hour < 18 };
`)
	s, err := Compile([]Source{{Name: "bundle.cedar", Data: []byte(b.String())}})
	if err != nil {
		tb.Fatal(err)
	}
	e := NewEngine(s)
	var ins []*Input
	for i := 0; i < 64; i++ {
		r := i % 20
		dir := fmt.Sprintf("/work/role%d", r)
		if i%4 == 1 {
			dir = "/etc" // outside the role's tree: denied
		}
		args, _ := Arguments([]byte(fmt.Sprintf(`{"path":"%s/src/file%d.go","content":"x"}`, dir, i)))
		tool := fmt.Sprintf("files__write%d", i%8)
		readOnly := false
		if i%2 == 0 {
			tool, readOnly = ups[i%len(ups)]+"__read", true
		}
		up, _, _ := strings.Cut(tool, "__")
		ins = append(ins, &Input{
			Principal: &identity.Principal{Agent: fmt.Sprintf("agent%d", i%40), Roles: []string{fmt.Sprintf("role%d", r)}},
			Action:    ActionCallTool,
			Target:    Target{Kind: KindTool, ID: tool, Upstream: up, ReadOnly: readOnly},
			Arguments: args, Labels: []string{"untrusted_input"}, Now: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC),
		})
	}
	return e, ins
}

// BenchmarkDecideRealistic: one decision against the realistic bundle. The
// custom metrics are decisions/s on one core and the p99 of single decisions.
func BenchmarkDecideRealistic(b *testing.B) {
	e, ins := realisticBundle(b)
	b.Logf("%d policies", e.Current().Len())
	allowed := 0
	for _, in := range ins {
		if e.Decide(in).Allow {
			allowed++
		}
	}
	if allowed == 0 || allowed == len(ins) {
		b.Fatalf("%d of %d allowed: the workload does not exercise both outcomes", allowed, len(ins))
	}
	lat := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		start := time.Now()
		e.Decide(ins[i%len(ins)])
		lat = append(lat, time.Since(start))
		i++
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds())/1000, "p99-µs")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
}
