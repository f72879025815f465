package detect

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/config"
)

func call(at time.Time, agent, session, tool string, denied bool) *audit.Event {
	o := audit.OutcomeAllow
	if denied {
		o = audit.OutcomeDeny
	}
	e := audit.New(audit.TypeDecision, o, "", at, audit.Subject{Agent: agent, SessionID: session})
	e.Action, e.Target = "call_tool", tool
	return e
}

func classes(as []Alert) []string {
	var out []string
	for _, a := range as {
		out = append(out, a.Class)
	}
	return out
}

func TestBaselines(t *testing.T) {
	paris, _ := time.LoadLocation("Europe/Paris")
	d := New([]Baseline{
		{Role: "ops", Tools: []string{"demo__read_*"}, ActiveFrom: 8 * 60, ActiveTo: 18 * 60, Location: paris, Source: "b0"},
		{Agent: "night", ActiveFrom: 22 * 60, ActiveTo: 6 * 60, Location: time.UTC, Source: "b1"},
	})
	noon := time.Date(2026, 11, 30, 11, 0, 0, 0, time.UTC) // 12:00 in Paris
	if got := d.Observe(call(noon, "a", "s1", "demo__read_file", false), []string{"ops"}); len(got) != 0 {
		t.Fatalf("a normal call raised %v", classes(got))
	}
	if got := d.Observe(call(noon, "b", "s2", "demo__read_file", false), nil); len(got) != 0 {
		t.Fatalf("an agent without a baseline raised %v", classes(got))
	}
	late := time.Date(2026, 11, 30, 19, 30, 0, 0, time.UTC) // 20:30 in Paris
	if got := classes(d.Observe(call(late, "a", "s1", "demo__read_file", false), []string{"ops"})); len(got) != 1 || got[0] != OffHours {
		t.Fatalf("off hours: %v", got)
	}
	// Across midnight: 23:00 and 05:00 are active, 12:00 is not.
	for _, tc := range []struct {
		at  time.Time
		off bool
	}{{time.Date(2026, 11, 30, 23, 0, 0, 0, time.UTC), false}, {time.Date(2026, 12, 1, 5, 0, 0, 0, time.UTC), false}, {noon, true}} {
		got := d.Observe(call(tc.at, "night", "n-"+tc.at.String(), "x__y", false), nil)
		if (len(got) == 1) != tc.off {
			t.Errorf("night agent at %s: %v", tc.at, classes(got))
		}
	}
	// Five denials in a minute are a burst, raised once per session and
	// class within suppressFor; the unexpected tools too.
	var all []string
	for i := range 7 {
		all = append(all, classes(d.Observe(call(noon.Add(time.Duration(i)*time.Second), "a", "s3", "demo__send_message", true), []string{"ops"}))...)
	}
	want := map[string]int{UnexpectedTool: 1, DenialBurst: 1}
	got := map[string]int{}
	for _, c := range all {
		got[c]++
	}
	if got[UnexpectedTool] != want[UnexpectedTool] || got[DenialBurst] != want[DenialBurst] || len(all) != 2 {
		t.Fatalf("burst: %v", all)
	}
	if g := d.Observe(call(noon.Add(6*time.Minute), "a", "s3", "demo__send_message", false), []string{"ops"}); len(g) != 1 || g[0].Class != UnexpectedTool || len(g[0].Techniques) == 0 {
		t.Fatalf("after suppressFor the alert is raised again: %v", classes(g))
	}
}

func TestRate(t *testing.T) {
	d := New([]Baseline{{Agent: "a", CallsPerMinute: 3, Location: time.UTC}})
	t0 := time.Date(2026, 11, 30, 11, 0, 0, 0, time.UTC)
	var got []string
	for i := range 4 {
		got = append(got, classes(d.Observe(call(t0.Add(time.Duration(i)*time.Second), "a", "s", "x__y", false), nil))...)
	}
	if len(got) != 1 || got[0] != Rate {
		t.Fatalf("4 calls in a minute over 3: %v", got)
	}
	// A minute later the window is clear.
	if g := d.Observe(call(t0.Add(2*time.Minute), "a", "s2", "x__y", false), nil); len(g) != 0 {
		t.Fatalf("after the window: %v", classes(g))
	}
}

// BenchmarkObserve is the detector's cost on the hot path: one call
// decision of an agent with a baseline.
func BenchmarkObserve(b *testing.B) {
	d := New([]Baseline{{Agent: "a", Tools: []string{"demo__read_*", "demo__list_files"}, CallsPerMinute: 1 << 30, ActiveFrom: 0, ActiveTo: 0, Location: time.UTC}})
	t0 := time.Now()
	e := call(t0, "a", "s", "demo__read_file", false)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		e.Time = t0.Add(time.Duration(i) * time.Microsecond)
		d.Observe(e, nil)
	}
}

func TestTriage(t *testing.T) {
	for _, tc := range []struct {
		name  string
		a     Alert
		ev    Evidence
		want  string
		reply string
	}{
		{"hijacked after injection", Alert{Class: UnexpectedTool}, Evidence{Findings: []string{"prompt_injection"}}, Malicious, "revoke_agent"},
		{"probing after untrusted input", Alert{Class: DenialBurst}, Evidence{Labels: []string{"untrusted_input"}}, Malicious, "revoke_agent"},
		{"several deviations", Alert{Class: Rate}, Evidence{RelatedAlerts: []string{UnexpectedTool}}, Malicious, "terminate_session"},
		{"a late worker", Alert{Class: OffHours}, Evidence{Decisions: 3}, Benign, "flag"},
		{"late with denials", Alert{Class: OffHours}, Evidence{Decisions: 3, Denied: 2}, Suspicious, "read_only"},
		{"a burst alone", Alert{Class: DenialBurst}, Evidence{Decisions: 9, Denied: 6}, Suspicious, "terminate_session"},
		{"one unexpected tool", Alert{Class: UnexpectedTool}, Evidence{Decisions: 1}, Suspicious, "read_only"},
	} {
		r := Triage(tc.a, tc.ev)
		if r.Verdict != tc.want || r.Recommended != tc.reply || len(r.Reasons) == 0 || r.Confidence <= 0 {
			t.Errorf("%s: %+v", tc.name, r)
		}
	}
}

// TestConfigurationKnowsTheClasses: the classes the configuration accepts
// are the detector's.
func TestConfigurationKnowsTheClasses(t *testing.T) {
	if !slices.Equal(config.AlertClasses, Classes) {
		t.Fatalf("config.AlertClasses %v, detect.Classes %v", config.AlertClasses, Classes)
	}
}

// Credential hunting: two results carrying secrets in one session within
// ten minutes, whatever the tools; other categories and sessions do not
// count.
func TestCredentialAccess(t *testing.T) {
	d := New(nil)
	d.WatchContent()
	at := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	finding := func(at time.Time, session string) *audit.Event {
		e := audit.New(audit.TypeScreening, audit.OutcomeInfo, "redacted", at, audit.Subject{Agent: "a", SessionID: session})
		e.Target = "files__read"
		return e
	}
	if got := d.ObserveFinding(finding(at, "s1"), []string{"secret"}); len(got) != 0 {
		t.Fatalf("one secret: %v", classes(got))
	}
	if got := d.ObserveFinding(finding(at, "s2"), []string{"secret"}); len(got) != 0 {
		t.Fatalf("another session's secret counted: %v", classes(got))
	}
	if got := d.ObserveFinding(finding(at.Add(time.Minute), "s1"), []string{"personal_data"}); len(got) != 0 {
		t.Fatalf("personal data counted as a secret: %v", classes(got))
	}
	if got := d.ObserveFinding(finding(at.Add(11*time.Minute), "s2"), []string{"secret"}); len(got) != 0 {
		t.Fatalf("secrets eleven minutes apart: %v", classes(got))
	}
	got := d.ObserveFinding(finding(at.Add(2*time.Minute), "s1"), []string{"prompt_injection", "secret"})
	if len(got) != 1 || got[0].Class != CredentialAccess || got[0].Severity != High || got[0].Session != "s1" {
		t.Fatalf("credential hunting: %+v", got)
	}
	if New(nil).ObserveFinding(finding(at, "s1"), []string{"secret"}) != nil {
		t.Error("a detector not watching content raised an alert")
	}
}

// Lateral movement: an agent acting on a delegation from an agent whose
// baseline expects other receivers; the expected receiver raises nothing.
func TestLateralMovement(t *testing.T) {
	d := New([]Baseline{{Agent: "orchestrator", DelegatesTo: []string{"reporter"}, Source: "b0"}})
	at := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	e := call(at, "reporter", "s1", "files__read", false)
	e.Actors = []string{"orchestrator"}
	if got := d.Observe(e, nil); len(got) != 0 {
		t.Fatalf("the expected receiver: %v", classes(got))
	}
	e = call(at, "helper", "s2", "files__read", false)
	e.Actors = []string{"orchestrator", "user-agent"}
	got := d.Observe(e, nil)
	if len(got) != 1 || got[0].Class != LateralMovement || got[0].Baseline != "b0" {
		t.Fatalf("an unexpected receiver: %+v", got)
	}
	e = call(at, "helper", "s3", "files__read", false)
	e.Actors = []string{"someone-else"}
	if got := d.Observe(e, nil); len(got) != 0 {
		t.Fatalf("a delegator without a baseline: %v", classes(got))
	}
}

// FuzzObserve: no event, whatever its fields, makes the detector fail,
// with declared and learned baselines on.
func FuzzObserve(f *testing.F) {
	f.Add("a", "s", "call_tool", "t__x", false, "b", int64(0))
	f.Add("", "", "read_resource", "", true, "", int64(1e18))
	f.Fuzz(func(t *testing.T, agent, session, action, target string, denied bool, actor string, ns int64) {
		d := New([]Baseline{{Agent: "a", Tools: []string{"t__*"}, DelegatesTo: []string{"c"}, CallsPerMinute: 2, ActiveFrom: 60, ActiveTo: 120, Location: time.UTC}, {Role: "r"}})
		d.Learn(LearnOptions{MinObservations: 2})
		d.WatchContent()
		for i := range 5 {
			e := call(time.Unix(0, ns).Add(time.Duration(i)*time.Second), agent, session, target, denied)
			e.Action = action
			if actor != "" {
				e.Actors = []string{actor}
			}
			d.Observe(e, []string{"r"})
			e.Type = audit.TypeScreening
			d.ObserveFinding(e, []string{"secret"})
		}
		if s := d.Snapshot(time.Unix(0, ns)); s.Validate() != nil {
			t.Fatalf("a snapshot of the learned state does not validate: %v", s.Validate())
		}
	})
}

// BenchmarkObserveLearned is the learned detectors' cost on the hot path:
// one normal call of an agent whose profile has learned (scored on every
// metric, then learned).
func BenchmarkObserveLearned(b *testing.B) {
	d := New(nil)
	d.Learn(LearnOptions{MinObservations: 200})
	t0 := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	tools := []string{"demo__read_file", "demo__list_files", "demo__search_files", "demo__read_file"}
	for i := range 1000 {
		e := call(t0.Add(time.Duration(i)*time.Second), "a", fmt.Sprint("s", i/20), tools[i%4], false)
		e.Upstream = "demo"
		d.Observe(e, []string{"r"})
	}
	e := call(t0, "a", "s-bench", "demo__read_file", false)
	e.Upstream = "demo"
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		e.Time = t0.Add(1000*time.Second + time.Duration(i)*10*time.Second)
		e.Target = tools[i%4]
		if got := d.Observe(e, []string{"r"}); len(got) != 0 {
			b.Fatalf("a normal call raised %s: %s", got[0].Class, got[0].Evidence)
		}
	}
}
