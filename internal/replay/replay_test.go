package replay

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portcullis-dev/portcullis/internal/config"
)

func loadSlack(t *testing.T) *Suite {
	t.Helper()
	dir, _ := filepath.Abs("../../../shared/agentdojo/slack")
	if _, err := os.Stat(filepath.Join(dir, "pairs.jsonl")); err != nil {
		t.Skip("AgentDojo traces not available")
	}
	s, err := LoadSuite(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func replayConfig(t *testing.T, policy string, extra string) *config.Config {
	t.Helper()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "p.cedar"), []byte(policy), 0o600)
	os.WriteFile(filepath.Join(dir, "c.yaml"), []byte("version: 1\npolicy: {paths: [p.cedar]}\nagents: [{name: assistant, roles: [assistant]}]\nupstreams: [{name: slack, http: {url: 'http://127.0.0.1:9/mcp'}}]\n"+extra), 0o600)
	cfg, err := config.Load(filepath.Join(dir, "c.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// With every call allowed, the replay reproduces the undefended baseline:
// every user task completes and the attacker's goal lands wherever
// AgentDojo says it does when all calls run.
func TestReplayAllowAllIsUndefended(t *testing.T) {
	s := loadSlack(t)
	rep, err := Run(context.Background(), Options{Suite: s, Config: replayConfig(t, `permit (principal, action, resource);`, "screening: {rules: []}\n"), Mode: ModeAgent})
	if err != nil {
		t.Fatal(err)
	}
	landed := 0
	for _, p := range s.Pairs {
		if p.ReplayCheck.AllCallsAllowed.Security {
			landed++
		}
	}
	want := float64(landed) / float64(len(s.Pairs))
	if rep.Utility != 1 || rep.UtilityUnderAttack != 1 || rep.AttackSuccess != want || rep.AttackSuccess < 0.9 {
		t.Errorf("allow-all: utility %.3f / %.3f, attack success %.3f (AgentDojo: %.3f)", rep.Utility, rep.UtilityUnderAttack, rep.AttackSuccess, want)
	}
	if rep.Pairs != len(s.Pairs) || rep.UserTasks != len(s.UserTasks) {
		t.Errorf("replayed %d pairs, %d user tasks", rep.Pairs, rep.UserTasks)
	}
}

// With nothing allowed, nothing completes and nothing lands; the agent
// never even reads an injection (the calls that return them are refused).
func TestReplayDenyAll(t *testing.T) {
	s := loadSlack(t)
	rep, err := Run(context.Background(), Options{Suite: s, Config: replayConfig(t, `forbid (principal, action, resource);`, ""), Mode: ModeAgent, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Utility != 0 || rep.AttackSuccess != 0 || rep.StoppedBy["injection_not_delivered (forbidden_by_policy)"] != 10 {
		t.Errorf("deny-all: utility %.3f, attack success %.3f, stopped by %v", rep.Utility, rep.AttackSuccess, rep.StoppedBy)
	}
}

// Task mode scopes each session to the user's tools: an attacker call to
// any other tool is refused as outside the task.
func TestReplayTaskScope(t *testing.T) {
	s := loadSlack(t)
	rep, err := Run(context.Background(), Options{Suite: s, Config: replayConfig(t, `permit (principal, action, resource);`, "screening: {rules: []}\n"), Mode: ModeTask})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Utility != 1 || rep.AttackSuccess > 0.3 || rep.StoppedBy["outside_task_scope"] == 0 {
		t.Errorf("task scope: utility %.3f, attack success %.3f, stopped by %v", rep.Utility, rep.AttackSuccess, rep.StoppedBy)
	}
}

// Scoring: a gateway that executes exactly the user's calls scores full
// utility and no attack success (checked on the report with the outcomes
// such a gateway would produce).
func TestReportExactlyTheUsersCalls(t *testing.T) {
	s := loadSlack(t)
	rep := newReport(Options{Suite: s, Mode: ModeAgent})
	for _, id := range s.UserTaskIDs() {
		steps := s.userSteps(s.UserTasks[id], nil)
		outs := make([]outcome, len(steps))
		for i := range outs {
			outs[i] = outcome{executed: true}
		}
		rep.addBenign(id, steps, outs)
	}
	for _, p := range s.Pairs {
		steps := s.pairSteps(p)
		outs := make([]outcome, len(steps))
		for i, st := range steps {
			outs[i] = outcome{executed: !st.injection, code: map[bool]string{true: "no_permit"}[st.injection]}
		}
		rep.addPair(p, steps, outs)
	}
	rep.finish()
	if rep.Utility != 1 || rep.UtilityUnderAttack != 1 || rep.AttackSuccess != 0 || rep.AttackSuccessApproved != 0 || rep.StoppedBy != nil && len(rep.stops) != len(s.Pairs) {
		t.Errorf("exact: %+v", rep)
	}
}

func TestPairStepsOrder(t *testing.T) {
	s := loadSlack(t)
	p := s.Pairs[0]
	steps := s.pairSteps(p)
	user := s.UserTasks[p.UserTask].GroundTruth
	inj := s.InjectionTasks[p.InjectionTask].GroundTruth
	if len(steps) != len(user)+len(inj) {
		t.Fatalf("%d steps for %d user and %d attacker calls", len(steps), len(user), len(inj))
	}
	k := p.ReplayCheck.InjectionAfter
	for i, st := range steps {
		if st.injection != (i > k && i <= k+len(inj)) {
			t.Fatalf("step %d (%s) injection=%v; injection after user call %d", i, st.fn, st.injection, k)
		}
	}
	var before strings.Builder
	for _, st := range steps[:k+1] {
		before.WriteString(st.output)
	}
	for _, text := range p.Injections {
		if !strings.Contains(before.String(), strings.TrimSpace(text)) {
			t.Fatalf("the attack text is not in the outputs before the attacker's calls")
		}
	}
}

func TestTrajectories(t *testing.T) {
	path, _ := filepath.Abs("../../../shared/corpora/injecagent_trajectories/dev.jsonl.gz")
	if _, err := os.Stat(path); err != nil {
		t.Skip("trajectories corpus not available")
	}
	recs, err := ReadTrajectories(path)
	if err != nil {
		t.Fatal(err)
	}
	// A sample with both labels, and a data-stealing case with its
	// sending step.
	var sample []Trajectory
	var attacks, benign, step2 int
	for _, r := range recs {
		_, has2 := r.step2()
		switch {
		case r.Label == "attack" && (attacks < 8 || has2 && step2 < 4):
			attacks++
			if has2 {
				step2++
			}
		case r.Label == "benign" && benign < 8:
			benign++
		default:
			continue
		}
		sample = append(sample, r)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "p.cedar"), []byte(`permit (principal, action, resource);`), 0o600)
	os.WriteFile(filepath.Join(dir, "c.yaml"), []byte("version: 1\npolicy: {paths: [p.cedar]}\nagents: [{name: assistant, roles: [assistant]}]\nupstreams: [{name: injecagent, http: {url: 'http://127.0.0.1:9/mcp'}}]\nscreening: {rules: []}\n"), 0o600)
	open, err := config.Load(filepath.Join(dir, "c.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	// Everything allowed: nothing is stopped.
	rep, err := RunTrajectories(context.Background(), sample, open, ModeAgent)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Hijacked != attacks || rep.Stopped != 0 || rep.LetThrough != benign || rep.Exfil != step2 || rep.ExfilStopped != 0 {
		t.Errorf("allow-all: %+v", rep)
	}
	// Scoped to the user's tool: the hijacked actions (to the attacker's
	// tools) are outside the task.
	rep, err = RunTrajectories(context.Background(), sample, open, ModeTask)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Stopped == 0 || rep.StoppedBy["outside_task_scope"] == 0 {
		t.Errorf("task scope: %+v", rep)
	}
}

func TestParseInput(t *testing.T) {
	for in, want := range map[string]string{
		`{"to": "a@b.c"}`:                     `map[to:a@b.c]`,
		`{'keywords': ['Budget'], 'n': True}`: `map[keywords:[Budget] n:true]`,
		`not a dict`:                          `map[input:not a dict]`,
		``:                                    `map[]`,
	} {
		if got := fmt.Sprint(parseInput(in)); got != want {
			t.Errorf("%q: %s, want %s", in, got, want)
		}
	}
}
