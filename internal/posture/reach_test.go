package posture

import (
	"os"
	"slices"
	"testing"
	"time"

	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/policy"
)

// exampleReach is the blast radius of agent under one of the examples'
// configurations (its tools: those it classifies; no pins).
func exampleReach(t *testing.T, configPath, agent string, extra ...string) *Reach {
	t.Helper()
	cfg, err := config.Load(configPath)
	if err != nil {
		t.Fatal(err)
	}
	var srcs []policy.Source
	for _, p := range append(append([]string(nil), cfg.Policy.Paths...), extra...) {
		b, err := os.ReadFile(cfg.Path(p))
		if err != nil {
			t.Fatal(err)
		}
		srcs = append(srcs, policy.Source{Name: p, Data: b})
	}
	set, err := policy.Compile(srcs)
	if err != nil {
		t.Fatal(err)
	}
	r, ok := BlastRadius(cfg, set, KnownTools(cfg, nil), agent, nil, time.Now())
	if !ok {
		t.Fatalf("no agent %s", agent)
	}
	return r
}

func decisions(r *Reach) map[string][]string {
	out := map[string][]string{}
	for _, t := range r.Reachable {
		out[t.Decision] = append(out[t.Decision], t.Name)
	}
	return out
}

// TestBlastRadiusOfTheWorkspaceAssistant checks the AgentDojo workspace
// example against what its policy says, derived by hand: the assistant may
// use every tool; what sends or deletes is guarded by the provenance
// forbids that concern it (never a read or a local write); nothing waits
// for a person; no tool gives private data, so no lethal trifecta.
func TestBlastRadiusOfTheWorkspaceAssistant(t *testing.T) {
	r := exampleReach(t, "../../examples/agentdojo/workspace.yaml", "assistant")
	d := decisions(r)
	guarded := []string{"workspace__add_calendar_event_participants", "workspace__cancel_calendar_event", "workspace__create_calendar_event",
		"workspace__delete_email", "workspace__delete_file", "workspace__reschedule_calendar_event", "workspace__send_email", "workspace__share_file"}
	if !slices.Equal(d[ReachGuarded], guarded) {
		t.Errorf("guarded %v\nwant    %v", d[ReachGuarded], guarded)
	}
	if len(d[ReachAllowed]) != 16 || !slices.Contains(d[ReachAllowed], "workspace__create_file") || !slices.Contains(d[ReachAllowed], "workspace__search_emails") {
		t.Errorf("allowed %v", d[ReachAllowed])
	}
	if len(d[ReachApproval])+len(d[ReachConditional])+len(d[ReachDenied]) != 0 || r.Tools != 24 {
		t.Errorf("decisions %v of %d tools", d, r.Tools)
	}
	for _, tr := range r.Reachable {
		want := map[string][]string{
			"workspace__send_email":            {"no-untrusted-destinations", "no-untrusted-identifiers-out"},
			"workspace__delete_file":           {"no-untrusted-targets"},
			"workspace__cancel_calendar_event": {"no-untrusted-destinations", "no-untrusted-identifiers-out", "no-untrusted-targets"},
		}[tr.Name]
		if want != nil && !slices.Equal(tr.Guards, want) {
			t.Errorf("%s guarded by %v, want %v", tr.Name, tr.Guards, want)
		}
	}
	if !slices.Equal(r.StandingHighImpact, guarded) || len(r.NeedApproval) != 0 {
		t.Errorf("standing %v, approval %v", r.StandingHighImpact, r.NeedApproval)
	}
	if len(r.External) != 6 || len(r.Money) != 0 || len(r.Delegates) != 0 || !slices.Equal(r.DataClasses, []string{"untrusted_input"}) {
		t.Errorf("external %v money %v delegates %v data %v", r.External, r.Money, r.Delegates, r.DataClasses)
	}
	if r.Trifecta.Possible || r.Trifecta.Why != "no private data" {
		t.Errorf("trifecta %+v", r.Trifecta)
	}

	// The hold-after-injection variant holds every state change (the local
	// writes too) once a session read an injection: a guard on all ten.
	held := exampleReach(t, "../../examples/agentdojo/workspace.yaml", "assistant", "hold-after-injection.cedar")
	want := slices.Sorted(slices.Values(append(slices.Clone(guarded), "workspace__append_to_file", "workspace__create_file")))
	if got := decisions(held)[ReachGuarded]; !slices.Equal(got, want) {
		t.Errorf("with hold-after-injection, guarded %v\nwant %v", got, want)
	}
	for _, tr := range held.Reachable {
		if tr.Name == "workspace__create_file" && !slices.Equal(tr.Guards, []string{"hold-after-injection"}) {
			t.Errorf("create_file guarded by %v", tr.Guards)
		}
	}
}

// TestTrifecta: private data, untrusted content and a way out within one
// agent's reach, then closed by a policy on data-flow labels.
func TestTrifecta(t *testing.T) {
	cfg, err := config.Parse([]byte(baseConfig), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	tools := make([]Tool, len(knownTools))
	for i, kt := range knownTools {
		kt.Classes, kt.Labels = classes(cfg, kt), labels(cfg, config.Upstream{}, kt)
		tools[i] = kt
	}
	reach := func(policies string) *Reach {
		set, err := policy.Compile([]policy.Source{{Name: "p.cedar", Data: []byte(policies)}})
		if err != nil {
			t.Fatal(err)
		}
		r, _ := BlastRadius(cfg, set, tools, "support", nil, time.Now())
		return r
	}
	open := reach(basePolicy).Trifecta
	if !open.Possible || open.Blocked || !slices.Equal(open.Private, []string{"crm__lookup"}) || !slices.Equal(open.Exposure, []string{"crm__send_email", "bank__fetch_page"}) || !slices.Equal(open.Exfil, []string{"crm__send_email"}) {
		t.Fatalf("trifecta %+v", open)
	}
	closed := reach(basePolicy + `
@id("no-mail-after-untrusted")
forbid (principal, action == Action::"call_tool", resource == Tool::"crm__send_email")
when { context.session.labels.contains("untrusted_input") };
`).Trifecta
	if !closed.Possible || !closed.Blocked {
		t.Fatalf("a label policy does not close it: %+v", closed)
	}
	// payer reaches the payment alone: no trifecta, money movement.
	set, _ := policy.Compile([]policy.Source{{Name: "p.cedar", Data: []byte(basePolicy)}})
	payer, _ := BlastRadius(cfg, set, tools, "payer", nil, time.Now())
	if payer.Trifecta.Possible || !slices.Equal(payer.Money, []string{"bank__pay"}) || !slices.Equal(payer.StandingHighImpact, []string{"bank__pay"}) {
		t.Fatalf("payer %+v", payer)
	}
	// A task of the lookup alone reaches nothing else.
	task, _ := BlastRadius(cfg, set, tools, "support", []string{"crm__lookup"}, time.Now())
	if len(task.Reachable) != 1 || task.Trifecta.Possible {
		t.Fatalf("task reach %+v", task)
	}
}
