package detect

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// A restored snapshot with numbers out of range is refused; and whatever
// the state, Snapshot never fails (the gateway's sync calls it).
func TestRegressionRestoreOutOfRange(t *testing.T) {
	if _, err := ParseSnapshot([]byte(`{"version":1,"profiles":[{"key":"agent:a","observations":1000,
		"tools":{"t":1000},"calls_per_minute":{"mean":1e308,"var":0,"n":1000}}]}`)); err == nil {
		t.Fatal("a rate mean of 1e308 was accepted")
	}
	d := learned()
	d.Observe(call(time.Now(), "a", "s", "t", false), nil)
	d.learn.profiles["agent:a"].Rate.Mean = math.Inf(1) // as if it overflowed
	if s := d.Snapshot(time.Now()); s == nil || s.Validate() != nil {
		t.Fatal("Snapshot failed on a profile out of range")
	}
	d.Observe(call(time.Now(), "a", "s", "t", false), nil) // the statistic recovers
	if p := d.Profile("agent:a"); p == nil || !finite(p.Rate.Mean) {
		t.Fatalf("the rate statistic did not recover: %+v", p)
	}
}

// already reset: the alarm is lost). Baseline reads "learned agent".
func TestRegressionDriftSuppressionKey(t *testing.T) {
	day := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	d := learned()
	ra, rb := rand.New(rand.NewPCG(3, 4)), rand.New(rand.NewPCG(3, 4))
	for i := range 3 {
		workday(d, ra, day.AddDate(0, 0, i), "a", nil, 150, normalMix)
		workday(d, rb, day.AddDate(0, 0, i), "b", nil, 150, normalMix)
	}
	per := map[string]int{}
	var baselines []string
	for i := 3; i < 33; i++ {
		f := float64(i-3) / 30
		mix := map[string]float64{"files__read": 50 * (1 - f), "files__list": 30, "files__search": 15, "mail__send": 5 + 60*f}
		for _, ag := range []string{"a", "b"} {
			r := ra
			if ag == "b" {
				r = rb
			}
			for _, al := range workday(d, r, day.AddDate(0, 0, i), ag, nil, 150, mix) {
				if al.Class == Drift {
					per[al.Agent]++
					baselines = append(baselines, al.Baseline)
				}
			}
		}
	}
	t.Logf("drift alerts per agent %v, baselines %v", per, baselines)
	if per["a"] != per["b"] {
		t.Errorf("identical drift, different alerts: %v", per)
	}
	if slices.Contains(baselines, "learned agent") {
		t.Errorf("baseline names the key prefix, not the profile: %v", baselines)
	}
}

// A role profile's drift is no one agent's: it is not attributed to
// whichever agent's decision closes the window (a compromised agent
// drifting the role would get an innocent peer's session contained).
func TestRegressionRoleDriftLandsOnPeer(t *testing.T) {
	day := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	d := learned()
	ra, rb := rand.New(rand.NewPCG(5, 6)), rand.New(rand.NewPCG(7, 8))
	roles := []string{"ops"}
	for i := range 3 {
		workday(d, rb, day.AddDate(0, 0, i), "victim", roles, 150, normalMix)
		workday(d, ra, day.AddDate(0, 0, i), "attacker", roles, 600, normalMix)
	}
	for i := 3; i < 33; i++ {
		f := float64(i-3) / 30
		mix := map[string]float64{"files__read": 50 * (1 - f), "files__list": 30, "files__search": 15, "mail__send": 5 + 60*f}
		for _, al := range workday(d, rb, day.AddDate(0, 0, i), "victim", roles, 150, normalMix) {
			if al.Class == Drift && (al.Agent != "" || al.Session != "") {
				t.Fatalf("victim's session gets the alert of the attacker-driven drift: agent %s session %s: %s", al.Agent, al.Session, al.Evidence)
			}
		}
		workday(d, ra, day.AddDate(0, 0, i), "attacker", roles, 600, mix)
	}
}

// One session, distinct unknown tool names: the session's alerts are
// bounded (each is a durable write, a response, a triage).
func TestRegressionAlertFanOut(t *testing.T) {
	d := New([]Baseline{{Agent: "a", Tools: []string{"files__*"}, Source: "b0"}})
	at := time.Date(2026, 10, 1, 10, 0, 0, 0, time.UTC)
	n := 0
	for i := range 2000 {
		n += len(d.Observe(call(at.Add(time.Duration(i)*time.Millisecond), "a", "s1", fmt.Sprintf("x__%d", i), true), nil))
	}
	if n > 10 {
		t.Errorf("one session raised %d alerts in 2 s", n)
	}
}

// After learning at about 6 calls a minute, a session that ramps its rate
// by 20% a minute, keeping the learned tool mix, reaches the 600/min cap
// without a single alert: every step is learned (z < sensitivity) and
// inflates the EWMA mean and variance for the next.
func TestRegressionRateRampPoisoning(t *testing.T) {
	d := learned()
	r := rand.New(rand.NewPCG(1, 2))
	day := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	for i := range 5 {
		workday(d, r, day.AddDate(0, 0, i), "a", nil, 150, normalMix)
	}
	p := d.Profile("agent:a")
	t.Logf("learned rate %.1f±%.1f", p.Rate.Mean, p.Rate.SD())
	at := day.AddDate(0, 0, 5).Add(10 * time.Hour)
	tools := []string{"files__read", "files__list", "files__search", "mail__send"}
	w := []float64{50, 30, 15, 5}
	rate := 6.0
	var alerts []Alert
	calls := 0
	for m := 0; m < 60 && rate < 600; m++ {
		k := int(rate)
		for j := range k {
			x := r.Float64() * 100
			tool := tools[3]
			for ti, wt := range w {
				if x -= wt; x < 0 {
					tool = tools[ti]
					break
				}
			}
			e := call(at.Add(time.Duration(m)*time.Minute+time.Duration(j)*time.Minute/time.Duration(k)), "a", "s-ramp", tool, false)
			e.Upstream, _, _ = strings.Cut(tool, "__")
			alerts = append(alerts, d.Observe(e, nil)...)
			calls++
		}
		rate *= 1.2
	}
	p = d.Profile("agent:a")
	t.Logf("after %d calls: rate %.0f/min, learned %.1f±%.1f, alerts %v", calls, rate, p.Rate.Mean, p.Rate.SD(), classes(alerts))
	if len(alerts) == 0 {
		t.Errorf("the rate was ramped to %.0f/min unnoticed", rate)
	}
}
