package detect

import (
	"encoding/json"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// workday drives one agent's normal day: sessions of calls ten seconds
// apart, each tool drawn from weights, between 09:00 and 17:00 UTC. It
// returns the alerts raised.
func workday(d *Detector, r *rand.Rand, day time.Time, agent string, roles []string, calls int, weights map[string]float64) []Alert {
	var tools []string
	var total float64
	for t, w := range weights {
		tools = append(tools, t)
		total += w
	}
	slices.Sort(tools)
	var out []Alert
	at := day.Add(9 * time.Hour)
	session := ""
	for i := range calls {
		if i%20 == 0 {
			session = agent + "-" + at.Format(time.RFC3339)
			at = at.Add(10 * time.Minute)
		}
		at = at.Add(10 * time.Second)
		x := r.Float64() * total
		tool := tools[len(tools)-1]
		for _, t := range tools {
			if x -= weights[t]; x < 0 {
				tool = t
				break
			}
		}
		e := call(at, agent, session, tool, false)
		e.Upstream, _, _ = strings.Cut(tool, "__")
		out = append(out, d.Observe(e, roles)...)
	}
	return out
}

var normalMix = map[string]float64{"files__read": 50, "files__list": 30, "files__search": 15, "mail__send": 5}

func learned() *Detector {
	d := New(nil)
	d.Learn(LearnOptions{MinObservations: 200, Window: 24 * time.Hour})
	return d
}

func TestLearnedAnomalies(t *testing.T) {
	d := learned()
	r := rand.New(rand.NewPCG(1, 2))
	day := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	// The learning period raises nothing, nor do the days after it.
	for i := range 5 {
		if got := workday(d, r, day.AddDate(0, 0, i), "a", []string{"ops"}, 150, normalMix); len(got) != 0 {
			t.Fatalf("normal day %d raised %v: %s", i, classes(got), got[0].Evidence)
		}
	}
	at := day.AddDate(0, 0, 5).Add(10 * time.Hour)
	// A tool never seen, on an upstream never reached: one anomaly, both
	// metrics in its evidence, not learned (the next one alerts again
	// once the suppression ends).
	e := call(at, "a", "s-x", "vault__dump", false)
	e.Upstream = "vault"
	got := d.Observe(e, []string{"ops"})
	if len(got) != 1 || got[0].Class != Anomaly || got[0].Severity != High ||
		!strings.Contains(got[0].Evidence, "new_tool") || !strings.Contains(got[0].Evidence, "new_upstream") || got[0].Baseline != "learned agent:a" {
		t.Fatalf("new tool: %+v", got)
	}
	if !slices.Contains(got[0].Techniques, "AML.T0053") || !slices.Contains(got[0].Techniques, "T1567") {
		t.Errorf("techniques: %v", got[0].Techniques)
	}
	e = call(at.Add(6*time.Minute), "a", "s-x", "vault__dump", false)
	e.Upstream = "vault"
	if got := d.Observe(e, []string{"ops"}); len(got) != 1 {
		t.Fatalf("the anomalous call was learned: %v", classes(got))
	}
	// A burst of known calls: the rate deviates.
	var burst []Alert
	for i := range 40 {
		e := call(at.Add(time.Hour+time.Duration(i)*time.Second), "a", "s-burst", "files__read", false)
		e.Upstream = "files"
		burst = append(burst, d.Observe(e, []string{"ops"})...)
	}
	if len(burst) != 1 || burst[0].Class != Anomaly || !strings.Contains(burst[0].Evidence, "rate (") {
		t.Fatalf("burst: %+v", burst)
	}
	// Denials in a row, where the agent is never denied.
	var denied []Alert
	for i := range 6 {
		e := call(at.Add(2*time.Hour+time.Duration(i)*20*time.Second), "a", "s-deny", "files__read", true)
		e.Upstream = "files"
		denied = append(denied, d.Observe(e, []string{"ops"})...)
	}
	if len(denied) != 1 || !strings.Contains(denied[0].Evidence, "denials (") {
		t.Fatalf("denials: %+v", denied)
	}
	// A new agent of the role is scored by the role's profile at once.
	e = call(at.Add(3*time.Hour), "b", "s-b", "vault__dump", false)
	e.Upstream = "vault"
	if got := d.Observe(e, []string{"ops"}); len(got) != 1 || got[0].Baseline != "learned role:ops" {
		t.Fatalf("a new agent of the role: %+v", got)
	}
	// An agent of another role learns first.
	e = call(at.Add(3*time.Hour), "c", "s-c", "vault__dump", false)
	if got := d.Observe(e, []string{"dev"}); len(got) != 0 {
		t.Fatalf("an agent still learning raised %v", classes(got))
	}
}

// TestDrift: a slow shift of an agent's tool use over weeks raises a drift
// alert and no anomaly (the profile follows the change); the same weeks
// without change raise nothing; restoring the exported reference makes the
// drifted behaviour anomalous again.
func TestDrift(t *testing.T) {
	day := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	stable, drifting := learned(), learned()
	rs, rd := rand.New(rand.NewPCG(3, 4)), rand.New(rand.NewPCG(3, 4))
	for i := range 3 {
		workday(stable, rs, day.AddDate(0, 0, i), "a", nil, 150, normalMix)
		workday(drifting, rd, day.AddDate(0, 0, i), "a", nil, 150, normalMix)
	}
	known := drifting.Snapshot(day.AddDate(0, 0, 3))
	var stableAlerts, driftAlerts []Alert
	driftDay := -1
	for i := 3; i < 33; i++ {
		stableAlerts = append(stableAlerts, workday(stable, rs, day.AddDate(0, 0, i), "a", nil, 150, normalMix)...)
		// Each day a little more mail is sent and a little less read.
		f := float64(i-3) / 30
		mix := map[string]float64{"files__read": 50 * (1 - f), "files__list": 30, "files__search": 15, "mail__send": 5 + 60*f}
		got := workday(drifting, rd, day.AddDate(0, 0, i), "a", nil, 150, mix)
		if driftDay < 0 && slices.Contains(classes(got), Drift) {
			driftDay = i - 3
		}
		driftAlerts = append(driftAlerts, got...)
	}
	if len(stableAlerts) != 0 {
		t.Fatalf("stable behaviour raised %v: %s", classes(stableAlerts), stableAlerts[0].Evidence)
	}
	if driftDay < 0 {
		t.Fatalf("the drift went unnoticed: %v", classes(driftAlerts))
	}
	for _, a := range driftAlerts {
		if a.Class != Drift {
			t.Errorf("the slow change raised an anomaly: %s", a.Evidence)
		}
	}
	t.Logf("drift alerted on day %d of 30: %s", driftDay, driftAlerts[0].Evidence)

	// The export survives JSON and restores the known-good point.
	b, err := json.Marshal(known)
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseSnapshot(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := drifting.Restore(back); err != nil {
		t.Fatal(err)
	}
	heavy := map[string]float64{"files__list": 10, "mail__send": 90}
	if got := workday(drifting, rd, day.AddDate(0, 0, 40), "a", nil, 150, heavy); len(got) == 0 {
		t.Fatal("after restoring the known-good baseline, the drifted behaviour raised nothing")
	}
}

func TestSnapshotValidation(t *testing.T) {
	for name, doc := range map[string]string{
		"version":      `{"version":2,"profiles":[]}`,
		"key":          `{"version":1,"profiles":[{"key":"x"}]}`,
		"twice":        `{"version":1,"profiles":[{"key":"agent:a"},{"key":"agent:a"}]}`,
		"negative":     `{"version":1,"profiles":[{"key":"agent:a","tools":{"t":-1}}]}`,
		"counts":       `{"version":1,"profiles":[{"key":"agent:a","window_calls":1,"window_denied":2}]}`,
		"null":         `{"version":1,"profiles":[null]}`,
		"unknown":      `{"version":1,"profiles":[],"x":1}`,
		"trailing":     `{"version":1,"profiles":[]} {}`,
		"not json":     `version: 1`,
		"negative var": `{"version":1,"profiles":[{"key":"role:r","calls_per_minute":{"var":-1}}]}`,
	} {
		if _, err := ParseSnapshot([]byte(doc)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	s, err := ParseSnapshot([]byte(`{"version":1,"profiles":[{"key":"role:r"}]}`))
	if err != nil || s.Profiles[0].Tools == nil {
		t.Fatalf("a minimal snapshot: %v", err)
	}
	if err := New(nil).Restore(s); err == nil {
		t.Error("restored into a detector that does not learn")
	}
}

func FuzzParseSnapshot(f *testing.F) {
	f.Add([]byte(`{"version":1,"profiles":[{"key":"agent:a","tools":{"t":1},"transitions":{"a -> b":1}}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseSnapshot(b)
		if err != nil {
			return
		}
		d := learned()
		if err := d.Restore(s); err != nil {
			t.Fatalf("a parsed snapshot did not restore: %v", err)
		}
		// Whatever was restored, scoring does not fail.
		e := call(time.Now(), "a", "s", "t", false)
		d.Observe(e, []string{"r"})
	})
}
