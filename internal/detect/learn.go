package detect

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/portcullis-dev/portcullis/internal/audit"
)

// Learned baselines (the framework's Enterprise tier) and drift (its
// Advanced tier).
//
// Every decision on a target also teaches a profile of its agent and one
// of each of its roles: which tools it calls and how often, which tool
// follows which, which upstreams it reaches, at which hours, how many
// requests a minute a session makes, and which share is denied. After a
// learning period (LearnOptions.MinObservations) each decision is scored
// against the agent's profile (or, while that one still learns, its
// role's) on every metric at once; the scores add up into one anomaly
// alert whose evidence names each deviating metric. A decision that
// raised an alert is not learned: an attacker does not teach the baseline
// the behaviour it was caught at.
//
// Profiles refine as behaviour legitimately changes (counts decay once a
// window), so slow change does not raise anomaly alerts. It is watched
// apart: at the end of every window the window's tool distribution is
// compared with the profile's reference (the known-good point frozen at the
// end of learning, or restored by an operator) by Jensen-Shannon distance,
// and its denial share with the reference's; a Page-Hinkley test on each
// series raises a drift alert when the divergence keeps growing.

// Learned alert classes.
const (
	Anomaly = "anomaly"
	Drift   = "drift"
)

// LearnOptions tune the learned detectors.
type LearnOptions struct {
	// MinObservations is the learning period: decisions a profile learns
	// before it scores (default 200).
	MinObservations int
	// Sensitivity is the z-score above which a rate or a denial share
	// deviates (default 4; lower is more sensitive).
	Sensitivity float64
	// Threshold is the summed score of the deviating metrics that raises
	// an anomaly alert (default 1: one strong deviation, or two weak ones).
	Threshold float64
	// Window is the drift window (default 24 h).
	Window time.Duration
	// DriftThreshold is the Page-Hinkley limit on the cumulated growth of
	// the distance from the reference (default 0.3).
	DriftThreshold float64
}

func (o *LearnOptions) defaults() {
	if o.MinObservations <= 0 {
		o.MinObservations = 200
	}
	if o.Sensitivity <= 0 {
		o.Sensitivity = 4
	}
	if o.Threshold <= 0 {
		o.Threshold = 1
	}
	if o.Window <= 0 {
		o.Window = 24 * time.Hour
	}
	if o.DriftThreshold <= 0 {
		o.DriftThreshold = 0.3
	}
}

// Bounds of a profile (a profile that reaches them stops adding keys; the
// decay at every window makes room again).
const (
	maxProfileTools       = 1000
	maxProfileTransitions = 10_000
	maxProfiles           = 10_000
	decay                 = 0.9 // counts kept at the end of every window
	minWindowCalls        = 10  // a window with fewer decisions is not a drift sample
	phDelta               = 0.01
	denialWindow          = 20 // decisions of a session its denial share is taken over
)

// Stat is an exponentially weighted mean and variance: an arithmetic mean
// for the first 1/alpha samples, a moving one after.
type Stat struct {
	Mean float64 `json:"mean"`
	Var  float64 `json:"var"`
	N    int64   `json:"n"`
}

const statAlpha = 0.01

func (s *Stat) add(x float64) {
	s.N++
	a := max(1/float64(s.N), statAlpha)
	d := x - s.Mean
	s.Mean += a * d
	s.Var = (1 - a) * (s.Var + a*d*d)
	if !finite(s.Mean) || !finite(s.Var) { // a restored state out of range
		s.Mean, s.Var = x, 0
	}
}

func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }

// maxValue bounds every number of a restored snapshot (counts and
// statistics stay far below it).
const maxValue = 1e12

// SD is the standard deviation.
func (s Stat) SD() float64 { return math.Sqrt(s.Var) }

// PageHinkley is the state of a Page-Hinkley test for an increase of a
// series' mean.
type PageHinkley struct {
	N   int64   `json:"n"`
	Avg float64 `json:"avg"`
	Sum float64 `json:"sum"`
	Min float64 `json:"min"`
}

// add takes x and returns the test statistic (alarm above the limit).
func (p *PageHinkley) add(x float64) float64 {
	p.N++
	p.Avg += (x - p.Avg) / float64(p.N)
	p.Sum += x - p.Avg - phDelta
	p.Min = min(p.Min, p.Sum)
	return p.Sum - p.Min
}

// Reference is a profile's known-good point.
type Reference struct {
	At      time.Time          `json:"at"`
	Tools   map[string]float64 `json:"tools"`
	Denials float64            `json:"denial_share"`
}

// Profile is what an agent (Key "agent:NAME") or a role ("role:NAME") has
// been seen to do. It is the unit exported and restored.
type Profile struct {
	Key          string             `json:"key"`
	Observations int64              `json:"observations"`
	Tools        map[string]float64 `json:"tools"`
	Transitions  map[string]float64 `json:"transitions"` // "prev -> next"
	Upstreams    map[string]float64 `json:"upstreams"`
	Delegators   map[string]float64 `json:"delegators,omitempty"` // agents that delegated to it
	Hours        [24]float64        `json:"hours_utc"`
	Rate         Stat               `json:"calls_per_minute"` // a session's, at each decision
	Denials      Stat               `json:"denials"`          // 1 denied, 0 not
	Reference    *Reference         `json:"reference,omitempty"`

	WindowStart   time.Time          `json:"window_start"`
	WindowTools   map[string]float64 `json:"window_tools,omitempty"`
	WindowCalls   int                `json:"window_calls"`
	WindowDenied  int                `json:"window_denied"`
	DriftTools    PageHinkley        `json:"drift_tools"`
	DriftDenials  PageHinkley        `json:"drift_denials"`
	LastDistance  float64            `json:"last_distance"`
	LastDriftStat float64            `json:"last_drift_stat"`
}

func newProfile(key string) *Profile {
	return &Profile{Key: key, Tools: map[string]float64{}, Transitions: map[string]float64{}, Upstreams: map[string]float64{}}
}

// Learning reports whether p is still in its learning period.
func (p *Profile) learning(o LearnOptions) bool { return p.Observations < int64(o.MinObservations) }

func transition(prev, next string) string { return prev + " -> " + next }

// sessionState is what the learned detectors keep per session.
type sessionState struct {
	last    string   // the last tool called
	recent  []bool   // the last denialWindow decisions: denied or not
	tools   []string // the last denialWindow tools called
	touched time.Time
}

// learner holds the profiles.
type learner struct {
	o        LearnOptions
	profiles map[string]*Profile
	sessions map[string]*sessionState
}

func newLearner(o LearnOptions) *learner {
	o.defaults()
	return &learner{o: o, profiles: map[string]*Profile{}, sessions: map[string]*sessionState{}}
}

func (l *learner) profile(key string) *Profile {
	p := l.profiles[key]
	if p == nil && len(l.profiles) < maxProfiles {
		p = newProfile(key)
		l.profiles[key] = p
	}
	return p
}

// deviation is one metric's contribution to an anomaly.
type deviation struct {
	metric    string
	score     float64
	evidence  string
	technique string
}

// observe scores e (when a profile has learned enough) and learns it
// unless it raised an alert. rate is the session's requests in the last
// minute, this one included. It returns the anomaly's deviations (none:
// normal) and the profile scored against, and any drift alerts' evidence.
func (l *learner) observe(e *audit.Event, roles []string, win string, rate int) (devs []deviation, against *Profile, drifts [][2]string) {
	s := l.sessions[win]
	if s == nil {
		if len(l.sessions) > maxTracked {
			clear(l.sessions)
		}
		s = &sessionState{}
		l.sessions[win] = s
	}
	s.touched = e.Time
	denied := e.Outcome == audit.OutcomeDeny
	s.recent = append(s.recent, denied)
	if len(s.recent) > denialWindow {
		s.recent = s.recent[len(s.recent)-denialWindow:]
	}
	keys := []string{"agent:" + e.Agent}
	for _, r := range roles {
		keys = append(keys, "role:"+r)
	}
	var ps []*Profile
	for _, k := range keys {
		if p := l.profile(k); p != nil {
			ps = append(ps, p)
		}
	}
	for _, p := range ps {
		if !p.learning(l.o) {
			against = p
			break
		}
	}
	tool := ""
	if e.Action == "call_tool" {
		tool = e.Target
		s.tools = append(s.tools, tool)
		if len(s.tools) > denialWindow {
			s.tools = s.tools[len(s.tools)-denialWindow:]
		}
	}
	if against != nil {
		devs = l.score(against, e, s, tool, rate)
	}
	var sum float64
	for _, d := range devs {
		sum += d.score
	}
	if sum < l.o.Threshold {
		devs = nil
		for _, p := range ps {
			if ev := l.learn(p, e, s.last, tool, rate, denied); ev != "" {
				drifts = append(drifts, [2]string{p.Key, ev})
			}
		}
	}
	if tool != "" {
		s.last = tool
	}
	return devs, against, drifts
}

// score measures e against p on every metric.
func (l *learner) score(p *Profile, e *audit.Event, s *sessionState, tool string, rate int) []deviation {
	var devs []deviation
	total := p.Observations
	if tool != "" {
		n := p.Tools[tool]
		switch {
		case n == 0:
			devs = append(devs, deviation{"new_tool", 1, fmt.Sprintf("%s never called in %d observations", tool, total), "AML.T0053"})
		case n/float64(total) < 0.005:
			devs = append(devs, deviation{"rare_tool", 0.5, fmt.Sprintf("%s is %.2f%% of the calls", tool, 100*n/float64(total)), "AML.T0053"})
		default:
			if s.last != "" {
				out := p.Tools[s.last] // calls of prev, an upper bound of its transitions
				if t := p.Transitions[transition(s.last, tool)]; t == 0 && out >= 20 {
					devs = append(devs, deviation{"rare_transition", 0.5, fmt.Sprintf("%s after %s never seen (%s called %.0f times)", tool, s.last, s.last, out), "AML.T0053"})
				}
			}
		}
	}
	if n := len(s.tools); tool != "" && n >= 10 && p.Tools[tool] > 0 {
		var sum float64
		for _, v := range p.Tools {
			sum += v
		}
		k, p0 := 0, p.Tools[tool]/sum
		for _, t := range s.tools {
			if t == tool {
				k++
			}
		}
		if sc := l.surprise(k, n, p0); sc > 0 {
			devs = append(devs, deviation{"tool_mix", sc, fmt.Sprintf("%s is %d of the session's last %d calls, learned share %.3f", tool, k, n, p0), "T1119"})
		}
	}
	if len(e.Actors) > 0 && p.Delegators[e.Actors[0]] == 0 {
		devs = append(devs, deviation{"new_delegator", 1, fmt.Sprintf("acting for %s, which never delegated to it (chain %v)", e.Actors[0], e.Actors), "T1550.001"})
	}
	if e.Upstream != "" && p.Upstreams[e.Upstream] == 0 {
		devs = append(devs, deviation{"new_upstream", 1, fmt.Sprintf("upstream %s never reached", e.Upstream), "T1567"})
	}
	if z := (float64(rate) - p.Rate.Mean) / max(p.Rate.SD(), 1); z > l.o.Sensitivity {
		devs = append(devs, deviation{"rate", min(z/l.o.Sensitivity, 3), fmt.Sprintf("%d requests in the session's last minute, learned %.1f±%.1f (z %.1f)", rate, p.Rate.Mean, p.Rate.SD(), z), "T1119"})
	}
	if n := len(s.recent); n >= 5 {
		d := 0
		for _, x := range s.recent {
			if x {
				d++
			}
		}
		if sc := l.surprise(d, n, p.Denials.Mean); sc > 0 {
			devs = append(devs, deviation{"denials", sc, fmt.Sprintf("%d of the session's last %d decisions denied, learned share %.3f", d, n, p.Denials.Mean), "T1526"})
		}
	}
	var hours float64
	for _, h := range p.Hours {
		hours += h
	}
	if h := e.Time.UTC().Hour(); hours > 0 && p.Hours[h]/hours < 0.002 {
		devs = append(devs, deviation{"hour", 0.5, fmt.Sprintf("a request at %02d h UTC, an hour with %.2f%% of the learned requests", h, 100*p.Hours[h]/hours), "T1078"})
	}
	return devs
}

// learn adds e to p and closes p's window when e is past it; it returns a
// drift alert's evidence when the closed window trips a test.
func (l *learner) learn(p *Profile, e *audit.Event, prev, tool string, rate int, denied bool) string {
	drift := ""
	if p.WindowStart.IsZero() {
		p.WindowStart = e.Time
	} else if e.Time.Sub(p.WindowStart) >= l.o.Window {
		drift = l.closeWindow(p, e.Time)
	}
	p.Observations++
	if tool != "" {
		addCount(p.Tools, tool, maxProfileTools)
		if prev != "" {
			addCount(p.Transitions, transition(prev, tool), maxProfileTransitions)
		}
		if p.WindowTools == nil {
			p.WindowTools = map[string]float64{}
		}
		addCount(p.WindowTools, tool, maxProfileTools)
	}
	if e.Upstream != "" {
		addCount(p.Upstreams, e.Upstream, maxProfileTools)
	}
	if len(e.Actors) > 0 {
		if p.Delegators == nil {
			p.Delegators = map[string]float64{}
		}
		addCount(p.Delegators, e.Actors[0], maxProfileTools)
	}
	p.Hours[e.Time.UTC().Hour()]++
	// After learning, a rate in the upper tail is not learned: a session
	// ramping its rate up a little at a time does not carry the baseline
	// along (it meets the z limit).
	if x := float64(rate); p.learning(l.o) || x <= p.Rate.Mean+2*max(p.Rate.SD(), 1) {
		p.Rate.add(x)
	}
	d := 0.0
	if denied {
		d = 1
		p.WindowDenied++
	}
	p.Denials.add(d)
	p.WindowCalls++
	if p.Reference == nil && !p.learning(l.o) {
		p.Reference = &Reference{At: e.Time, Tools: maps.Clone(p.Tools), Denials: p.Denials.Mean}
	}
	return drift
}

func addCount(m map[string]float64, k string, bound int) {
	if _, ok := m[k]; ok || len(m) < bound {
		m[k]++
	}
}

// closeWindow ends p's window at now: the window is compared with the
// reference, the drift tests take the comparison, and the profile's counts
// decay so that it follows legitimate change.
func (l *learner) closeWindow(p *Profile, now time.Time) string {
	defer func() {
		p.WindowStart, p.WindowTools, p.WindowCalls, p.WindowDenied = now, nil, 0, 0
		for _, m := range []map[string]float64{p.Tools, p.Transitions, p.Upstreams, p.Delegators} {
			for k, v := range m {
				if v *= decay; v < 0.05 {
					delete(m, k)
				} else {
					m[k] = v
				}
			}
		}
		for i := range p.Hours {
			p.Hours[i] *= decay
		}
	}()
	if p.Reference == nil || p.WindowCalls < minWindowCalls {
		return ""
	}
	dist := jsDistance(p.WindowTools, p.Reference.Tools)
	share := float64(p.WindowDenied) / float64(p.WindowCalls)
	p.LastDistance = dist
	st := p.DriftTools.add(dist)
	sd := p.DriftDenials.add(share - p.Reference.Denials)
	p.LastDriftStat = st
	var out []string
	if st > l.o.DriftThreshold {
		out = append(out, fmt.Sprintf("the tools used moved away from the reference of %s: distance %.2f this window (Page-Hinkley %.2f over %.2f)",
			p.Reference.At.UTC().Format(time.DateOnly), dist, st, l.o.DriftThreshold))
		p.DriftTools = PageHinkley{}
	}
	if sd > l.o.DriftThreshold {
		out = append(out, fmt.Sprintf("the denied share grew from %.3f to %.3f (Page-Hinkley %.2f over %.2f)", p.Reference.Denials, share, sd, l.o.DriftThreshold))
		p.DriftDenials = PageHinkley{}
	}
	if len(out) == 0 {
		return ""
	}
	return fmt.Sprintf("%s: %s", p.Key, strings.Join(out, "; "))
}

// jsDistance is the Jensen-Shannon distance (base 2, in [0, 1]) of two
// count distributions.
func jsDistance(a, b map[string]float64) float64 {
	var na, nb float64
	for _, v := range a {
		na += v
	}
	for _, v := range b {
		nb += v
	}
	if na == 0 || nb == 0 {
		return 0
	}
	keys := slices.Collect(maps.Keys(a))
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	var js float64
	for _, k := range keys {
		pa, pb := a[k]/na, b[k]/nb
		m := (pa + pb) / 2
		if pa > 0 {
			js += pa / 2 * math.Log2(pa/m)
		}
		if pb > 0 {
			js += pb / 2 * math.Log2(pb/m)
		}
	}
	return math.Sqrt(max(js, 0))
}

// Snapshot is the learned state: what `portcullis baseline export` writes
// and `restore` reads back, the known-good recovery point.
type Snapshot struct {
	Version  int        `json:"version"`
	Taken    time.Time  `json:"taken"`
	Profiles []*Profile `json:"profiles"`
}

// SnapshotVersion is the format of Snapshot.
const SnapshotVersion = 1

// Snapshot copies the learned state (nil when learning is off). A profile
// that does not encode (a number out of range) is left out.
func (d *Detector) Snapshot(now time.Time) *Snapshot {
	if d == nil || d.learn == nil {
		return nil
	}
	s := &Snapshot{Version: SnapshotVersion, Taken: now, Profiles: []*Profile{}}
	d.mu.Lock()
	docs := make([][]byte, 0, len(d.learn.profiles))
	for _, p := range d.learn.profiles {
		if b, err := json.Marshal(p); err == nil {
			docs = append(docs, b)
		}
	}
	d.mu.Unlock()
	for _, b := range docs {
		var p Profile
		if json.Unmarshal(b, &p) == nil {
			s.Profiles = append(s.Profiles, &p)
		}
	}
	slices.SortFunc(s.Profiles, func(a, b *Profile) int { return strings.Compare(a.Key, b.Key) })
	return s
}

// Restore replaces the learned state with s (validated first: nothing
// changes on an error). Sessions' windows are kept.
func (d *Detector) Restore(s *Snapshot) error {
	if d == nil || d.learn == nil {
		return errors.New("learned baselines are not on (detection.learning)")
	}
	if err := s.Validate(); err != nil {
		return err
	}
	ps := make(map[string]*Profile, len(s.Profiles))
	for _, p := range s.Profiles {
		ps[p.Key] = p
	}
	d.mu.Lock()
	d.learn.profiles = ps
	d.mu.Unlock()
	return nil
}

// ParseSnapshot reads an exported snapshot.
func ParseSnapshot(b []byte) (*Snapshot, error) {
	var s Snapshot
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("baseline snapshot: %w", err)
	}
	if dec.More() {
		return nil, errors.New("baseline snapshot: data after the document")
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return &s, nil
}

// Validate checks a snapshot read from outside.
func (s *Snapshot) Validate() error {
	if s.Version != SnapshotVersion {
		return fmt.Errorf("baseline snapshot: version %d, want %d", s.Version, SnapshotVersion)
	}
	if len(s.Profiles) > maxProfiles {
		return fmt.Errorf("baseline snapshot: %d profiles, at most %d", len(s.Profiles), maxProfiles)
	}
	seen := map[string]bool{}
	for i, p := range s.Profiles {
		at := fmt.Sprintf("baseline snapshot: profiles[%d]", i)
		switch {
		case p == nil:
			return fmt.Errorf("%s: null", at)
		case !strings.HasPrefix(p.Key, "agent:") && !strings.HasPrefix(p.Key, "role:") || len(p.Key) > 256:
			return fmt.Errorf("%s: key %q is not agent:NAME or role:NAME", at, p.Key)
		case seen[p.Key]:
			return fmt.Errorf("%s: %s twice", at, p.Key)
		case p.Observations < 0 || p.WindowCalls < 0 || p.WindowDenied < 0 || p.WindowDenied > p.WindowCalls:
			return fmt.Errorf("%s: negative or inconsistent counts", at)
		case len(p.Tools) > maxProfileTools || len(p.Upstreams) > maxProfileTools || len(p.Delegators) > maxProfileTools || len(p.WindowTools) > maxProfileTools || len(p.Transitions) > maxProfileTransitions:
			return fmt.Errorf("%s: more entries than a profile holds", at)
		}
		seen[p.Key] = true
		counts := []map[string]float64{p.Tools, p.Transitions, p.Upstreams, p.WindowTools, p.Delegators}
		if p.Reference != nil {
			if len(p.Reference.Tools) > maxProfileTools {
				return fmt.Errorf("%s: more entries than a profile holds", at)
			}
			counts = append(counts, p.Reference.Tools)
		}
		for _, m := range counts {
			for _, v := range m {
				if v < 0 || v > maxValue {
					return fmt.Errorf("%s: a count out of range", at)
				}
			}
		}
		for _, h := range p.Hours {
			if h < 0 || h > maxValue {
				return fmt.Errorf("%s: a count out of range", at)
			}
		}
		nums := []float64{p.Rate.Mean, p.Rate.Var, p.Denials.Mean, p.Denials.Var, p.DriftTools.Avg, p.DriftTools.Sum, p.DriftTools.Min,
			p.DriftDenials.Avg, p.DriftDenials.Sum, p.DriftDenials.Min, p.LastDistance, p.LastDriftStat}
		if p.Reference != nil {
			nums = append(nums, p.Reference.Denials)
		}
		for _, x := range nums {
			if x < -maxValue || x > maxValue {
				return fmt.Errorf("%s: a statistic out of range", at)
			}
		}
		if p.Rate.Var < 0 || p.Denials.Var < 0 || p.Rate.N < 0 || p.Denials.N < 0 || p.Observations > maxValue {
			return fmt.Errorf("%s: a negative statistic", at)
		}
		for _, m := range []*map[string]float64{&p.Tools, &p.Transitions, &p.Upstreams} {
			if *m == nil {
				*m = map[string]float64{}
			}
		}
	}
	return nil
}

// surprise scores k successes in n trials of probability p: 0 unless the
// binomial tail P(X >= k) is below 10^-(Sensitivity+2) (1e-6 by default),
// then -log10(tail)/(Sensitivity+2), at most 3. p is floored at 0.001 (a
// share never seen is not impossible).
func (l *learner) surprise(k, n int, p float64) float64 {
	p = min(max(p, 0.001), 0.999)
	if float64(k) < float64(n)*p+2 {
		return 0 // the common case, without the sum
	}
	var tail float64
	for i := k; i <= n; i++ {
		tail += math.Exp(lchoose(n, i) + float64(i)*math.Log(p) + float64(n-i)*math.Log1p(-p))
	}
	limit := l.o.Sensitivity + 2
	if tail <= 0 {
		return 3
	}
	sc := -math.Log10(tail) / limit
	if sc < 1 {
		return 0
	}
	return min(sc, 3)
}

func lchoose(n, k int) float64 {
	a, _ := math.Lgamma(float64(n + 1))
	b, _ := math.Lgamma(float64(k + 1))
	c, _ := math.Lgamma(float64(n - k + 1))
	return a - b - c
}

// Profile returns a copy of the learned profile of key ("agent:NAME",
// "role:NAME"), or nil.
func (d *Detector) Profile(key string) *Profile {
	if d == nil || d.learn == nil {
		return nil
	}
	d.mu.Lock()
	p := d.learn.profiles[key]
	var b []byte
	if p != nil {
		b, _ = json.Marshal(p)
	}
	d.mu.Unlock()
	if b == nil {
		return nil
	}
	var out Profile
	if json.Unmarshal(b, &out) != nil {
		return nil
	}
	return &out
}
