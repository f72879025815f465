package posture

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/policy"
	"github.com/portcullis-dev/portcullis/internal/reason"
	"github.com/portcullis-dev/portcullis/internal/store"
	"github.com/portcullis-dev/portcullis/internal/toolreg"
)

// Facts are what the checks read: the configuration, the policy bundle,
// and what the store holds.
type Facts struct {
	Now time.Time
	// Window is how far back activity counts (task tokens, grants,
	// metrics).
	Window       time.Duration
	Config       *config.Config
	ConfigPath   string
	ConfigSHA256 string
	// Dev: the embedded development configuration.
	Dev           bool
	PolicyVersion string
	Rules         []policy.Rule
	// AgentSVIDs counts each agent's active, unexpired SVIDs.
	AgentSVIDs map[string]int
	Checkpoint *Checkpoint
	// Bundles is how many policy bundles the store keeps.
	Bundles        int
	BaselinesSaved time.Time
	// TaskTokens and Grants issued within Window.
	TaskTokens, Grants int
	// PinsApproved and PinsQuarantined count the tool definitions pinned.
	PinsApproved, PinsQuarantined int
	// KnownTools and Reach: every agent's blast radius.
	KnownTools int
	Reach      []*Reach
	// VersionControl is the Git work tree holding the configuration file
	// ("": none found).
	VersionControl string
	Metrics        *Metrics
}

// Source is what Gather reads.
type Source struct {
	Config     *config.Config
	ConfigPath string // "" with Dev
	Dev        bool
	Store      *store.DB
	Policy     *policy.Set
	Now        time.Time
	Window     time.Duration // default 7 days
}

// DefaultWindow is how far back activity counts by default.
const DefaultWindow = 7 * 24 * time.Hour

// Gather reads the facts from src.
func Gather(ctx context.Context, src Source) (*Facts, error) {
	if src.Now.IsZero() {
		src.Now = time.Now()
	}
	if src.Window <= 0 {
		src.Window = DefaultWindow
	}
	f := &Facts{Now: src.Now, Window: src.Window, Config: src.Config, ConfigPath: src.ConfigPath, Dev: src.Dev,
		PolicyVersion: src.Policy.Version(), Rules: src.Policy.Rules(), AgentSVIDs: map[string]int{}}
	if src.Dev {
		// No file: the digest of the configuration as the gateway reads it.
		f.ConfigPath = "the embedded development configuration (--dev)"
		if b, err := json.Marshal(src.Config); err == nil {
			sum := sha256.Sum256(b)
			f.ConfigSHA256 = hex.EncodeToString(sum[:])
		}
	}
	if src.ConfigPath != "" {
		b, err := os.ReadFile(src.ConfigPath)
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(b)
		f.ConfigSHA256 = hex.EncodeToString(sum[:])
		f.VersionControl = gitTree(src.ConfigPath)
	}
	st := src.Store
	ins, err := st.Instances(ctx)
	if err != nil {
		return nil, err
	}
	for _, in := range ins {
		if in.State == "active" && in.NotAfter.After(src.Now) {
			f.AgentSVIDs[in.Agent]++
		}
	}
	c, ok, err := st.LatestCheckpoint(ctx)
	if err != nil {
		return nil, err
	}
	if ok {
		f.Checkpoint = &Checkpoint{Size: c.Size, Time: c.Time.UTC(), Note: string(c.Note), Root: noteRoot(c.Note)}
	}
	bs, err := st.Bundles(ctx)
	if err != nil {
		return nil, err
	}
	f.Bundles = len(bs)
	if _, body, saved, err := st.Baselines(ctx); err == nil && len(body) > 0 {
		f.BaselinesSaved = saved
	}
	pins, err := st.Pins(ctx, "")
	if err != nil {
		return nil, err
	}
	for _, p := range pins {
		switch p.State {
		case toolreg.Approved:
			f.PinsApproved++
		case toolreg.Quarantined:
			f.PinsQuarantined++
		}
	}
	tools := KnownTools(src.Config, pins)
	f.KnownTools = len(tools)
	for _, a := range src.Config.Agents {
		if r, ok := BlastRadius(src.Config, src.Policy, tools, a.Name, nil, src.Now); ok {
			f.Reach = append(f.Reach, r)
		}
	}
	m, err := gatherMetrics(ctx, st, src.Config, src.Now, src.Window)
	if err != nil {
		return nil, err
	}
	f.Metrics = m
	f.TaskTokens, f.Grants = m.taskTokens, m.grants
	return f, nil
}

// noteRoot reads the root hash of a C2SP checkpoint note (its third line).
func noteRoot(note []byte) string {
	lines := strings.SplitN(string(note), "\n", 4)
	if len(lines) < 3 {
		return ""
	}
	return lines[2]
}

// gitTree returns the Git work tree holding path, if any.
func gitTree(path string) string {
	abs, err := filepath.Abs(path)
	if err != nil {
		return ""
	}
	for d := filepath.Dir(abs); ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, ".git")); err == nil {
			return d
		}
		if d == filepath.Dir(d) {
			return ""
		}
	}
}

// Metrics are the outcome metrics (framework §7) over the window.
type Metrics struct {
	Window string    `json:"window"`
	Since  time.Time `json:"since"`
	// Events is the audit log's size.
	Events int64 `json:"audit_events"`
	// Decisions are counted over at most the window's last 10,000
	// (Sampled says when more happened).
	Decisions     int  `json:"decisions"`
	Sampled       bool `json:"sampled,omitempty"`
	Allowed       int  `json:"allowed"`
	Denied        int  `json:"denied"`
	Held          int  `json:"held_for_approval"`
	WithRequestID int  `json:"with_request_id"`
	// Explained decisions name the policies that made them (or deny by
	// default, which no policy permitted) and the bundle version.
	Explained int `json:"explained"`
	// Coverage: agents declared that acted in the window, those that did
	// not, and names that tried to authenticate without being enrolled.
	ActiveAgents []string `json:"active_agents"`
	IdleAgents   []string `json:"idle_agents"`
	Unenrolled   []string `json:"unenrolled"`
	// UnknownTargets are tools, resources or prompts agents asked for
	// that no upstream offers (calls around the configured surface).
	UnknownTargets int `json:"unknown_targets"`
	// Alerts and how many were triaged (the framework's coverage).
	Alerts  int `json:"alerts"`
	Triaged int `json:"triaged"`
	Drift   int `json:"drift_alerts"`
	// ApprovalLatency: request to decision; DwellTime: alert to the first
	// person's action on it; DetectionSpeed: the deviating request to its
	// alert.
	ApprovalLatency Stats `json:"approval_latency"`
	DwellTime       Stats `json:"dwell_time"`
	DetectionSpeed  Stats `json:"detection_speed"`
	// Trend is per day, oldest first.
	Trend []Day `json:"trend"`

	taskTokens, grants int
}

// Stats summarise durations.
type Stats struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50_seconds"`
	P95 float64 `json:"p95_seconds"`
}

func stats(ds []time.Duration) Stats {
	if len(ds) == 0 {
		return Stats{}
	}
	slices.Sort(ds)
	at := func(q float64) float64 { return ds[min(len(ds)-1, int(q*float64(len(ds))))].Seconds() }
	return Stats{N: len(ds), P50: at(0.5), P95: at(0.95)}
}

// Day is one day's counts.
type Day struct {
	Date      string `json:"date"`
	Decisions int    `json:"decisions"`
	Denied    int    `json:"denied"`
	Held      int    `json:"held"`
	Alerts    int    `json:"alerts"`
}

// eventLimit bounds the events of each kind read for the metrics.
const eventLimit = store.MaxQueryLimit

func gatherMetrics(ctx context.Context, st *store.DB, cfg *config.Config, now time.Time, window time.Duration) (*Metrics, error) {
	since := now.Add(-window)
	m := &Metrics{Window: window.String(), Since: since.UTC(), ActiveAgents: []string{}, IdleAgents: []string{}, Unenrolled: []string{}, Trend: []Day{}}
	state, err := st.State(ctx)
	if err != nil {
		return nil, err
	}
	m.Events = state.Size
	read := func(types ...string) ([]*audit.Event, bool, error) {
		rows, err := st.Events(ctx, store.EventQuery{Types: types, Limit: eventLimit, Last: true})
		if err != nil {
			return nil, false, err
		}
		var out []*audit.Event
		for _, r := range rows {
			if r.Time.Before(since) {
				continue
			}
			if e, err := audit.Decode(r); err == nil {
				out = append(out, e)
			}
		}
		return out, len(rows) == eventLimit && len(out) == len(rows), nil
	}
	days := map[string]*Day{}
	day := func(t time.Time) *Day {
		k := t.UTC().Format(time.DateOnly)
		if days[k] == nil {
			days[k] = &Day{Date: k}
		}
		return days[k]
	}
	decisions, sampled, err := read(string(audit.TypeDecision))
	if err != nil {
		return nil, err
	}
	m.Sampled = sampled
	active := map[string]bool{}
	byRequest := map[string]time.Time{}
	for _, e := range decisions {
		m.Decisions++
		d := day(e.Time)
		d.Decisions++
		switch {
		case e.Outcome == audit.OutcomeAllow:
			m.Allowed++
		case e.Code == reason.ApprovalRequired:
			m.Held++
			d.Held++
		default:
			m.Denied++
			d.Denied++
		}
		if e.RequestID != "" {
			m.WithRequestID++
			if _, ok := byRequest[e.RequestID]; !ok {
				byRequest[e.RequestID] = e.Time
			}
		}
		if e.PolicyVersion != "" && (len(e.Policies) > 0 || e.Code != "") {
			m.Explained++
		}
		if e.Code == reason.UnknownTarget {
			m.UnknownTargets++
		}
		if e.Agent != "" {
			active[e.Agent] = true
		}
	}
	for _, a := range cfg.Agents {
		if active[a.Name] {
			m.ActiveAgents = append(m.ActiveAgents, a.Name)
		} else {
			m.IdleAgents = append(m.IdleAgents, a.Name)
		}
	}
	authn, _, err := read(string(audit.TypeAuthn))
	if err != nil {
		return nil, err
	}
	for _, e := range authn {
		if _, ok := cfg.Agent(e.Agent); e.Agent != "" && !ok && !slices.Contains(m.Unenrolled, e.Agent) {
			m.Unenrolled = append(m.Unenrolled, e.Agent)
		}
	}
	sort.Strings(m.Unenrolled)
	alerts, _, err := read(string(audit.TypeAlert), string(audit.TypeTriage), string(audit.TypeAlertState), string(audit.TypeResponse))
	if err != nil {
		return nil, err
	}
	raised := map[string]time.Time{} // alerts no person has acted on yet
	ids, triaged := map[string]bool{}, map[string]bool{}
	var dwell, speed []time.Duration
	for _, e := range alerts {
		switch e.Type {
		case audit.TypeAlert:
			m.Alerts++
			day(e.Time).Alerts++
			raised[e.Alert], ids[e.Alert] = e.Time, true
			if e.Code == reason.AlertDrift {
				m.Drift++
			}
			if t, ok := byRequest[e.RequestID]; ok && e.RequestID != "" && !e.Time.Before(t) {
				speed = append(speed, e.Time.Sub(t))
			}
		case audit.TypeTriage:
			triaged[e.Alert] = true
		case audit.TypeAlertState:
			if t, ok := raised[e.Alert]; ok {
				dwell = append(dwell, e.Time.Sub(t))
				delete(raised, e.Alert) // the first person's action only
			}
		}
	}
	for id := range triaged {
		if ids[id] {
			m.Triaged++
		}
	}
	m.DwellTime, m.DetectionSpeed = stats(dwell), stats(speed)
	apps, err := st.RecentApprovals(ctx, since)
	if err != nil {
		return nil, err
	}
	var lat []time.Duration
	for _, a := range apps {
		if !a.DecidedAt.IsZero() && a.DecidedBy != "" {
			lat = append(lat, a.DecidedAt.Sub(a.Created))
		}
	}
	m.ApprovalLatency = stats(lat)
	issued, _, err := read(string(audit.TypeToken), string(audit.TypePrivilege))
	if err != nil {
		return nil, err
	}
	for _, e := range issued {
		switch e.Code {
		case reason.TaskStarted:
			m.taskTokens++
		case reason.GrantCreated:
			m.grants++
		}
	}
	keys := make([]string, 0, len(days))
	for k := range days {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		m.Trend = append(m.Trend, *days[k])
	}
	return m, nil
}

// ExplainedShare is the share of decisions explained, as text.
func (m *Metrics) ExplainedShare() string { return pct(m.Explained, m.Decisions) }

// String summarises the metrics on one line.
func (m *Metrics) String() string {
	return fmt.Sprintf("%d decisions (%d denied, %d held), %d alerts (%d triaged)", m.Decisions, m.Denied, m.Held, m.Alerts, m.Triaged)
}

// Gauges are the report's figures for Prometheus: each capability's tier
// (0 to 3) and the outcome metrics (ratios 0..1 where a denominator is
// zero are left out).
func (r *Report) Gauges() (tiers map[string]int, outcomes map[string]float64) {
	tiers = map[string]int{}
	for _, c := range r.Capabilities {
		tiers[c.ID] = int(c.Tier)
	}
	outcomes = map[string]float64{}
	m := r.Metrics
	if m == nil {
		return tiers, outcomes
	}
	ratio := func(k string, n, of int) {
		if of > 0 {
			outcomes[k] = float64(n) / float64(of)
		}
	}
	outcomes["decisions"] = float64(m.Decisions)
	ratio("denied_ratio", m.Denied, m.Decisions)
	ratio("held_ratio", m.Held, m.Decisions)
	ratio("explained_ratio", m.Explained, m.Decisions)
	ratio("request_id_ratio", m.WithRequestID, m.Decisions)
	outcomes["alerts"] = float64(m.Alerts)
	ratio("triaged_ratio", m.Triaged, m.Alerts)
	outcomes["drift_alerts"] = float64(m.Drift)
	outcomes["idle_agents"] = float64(len(m.IdleAgents))
	outcomes["unenrolled_agents"] = float64(len(m.Unenrolled))
	outcomes["unknown_targets"] = float64(m.UnknownTargets)
	for k, s := range map[string]Stats{"approval_latency": m.ApprovalLatency, "dwell_time": m.DwellTime, "detection_speed": m.DetectionSpeed} {
		if s.N > 0 {
			outcomes[k+"_p50_seconds"], outcomes[k+"_p95_seconds"] = s.P50, s.P95
		}
	}
	return tiers, outcomes
}
