package metrics

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/portcullis-dev/portcullis/internal/reason"
)

// Metrics is the set of gateway metrics.
type Metrics struct {
	reg         *prometheus.Registry
	requests    *prometheus.CounterVec
	decisions   *prometheus.CounterVec
	decisionLat prometheus.Histogram
	callLat     *prometheus.HistogramVec
	upstreamUp  *prometheus.GaugeVec
	restarts    *prometheus.CounterVec
	auditWrites *prometheus.CounterVec
	refusals    *prometheus.CounterVec
	sessions    prometheus.Gauge
	screened    *prometheus.CounterVec
	stages      *prometheus.HistogramVec
	auditSyncs  *prometheus.HistogramVec
	upSessions  *prometheus.GaugeVec
	queueWait   *prometheus.HistogramVec
	agentWait   *prometheus.CounterVec
	shed        *prometheus.CounterVec
	alerts      *prometheus.CounterVec
	triage      *prometheus.HistogramVec
	contained   *prometheus.HistogramVec
	detection   *prometheus.HistogramVec
	tier        *prometheus.GaugeVec
	outcome     *prometheus.GaugeVec
}

// New creates the metrics in a fresh registry, with Go runtime and process
// collectors.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portcullis_requests_total", Help: "MCP requests from agents, by method.",
		}, []string{"method"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portcullis_decisions_total", Help: "Policy decisions, by action and outcome.",
		}, []string{"action", "outcome"}),
		decisionLat: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "portcullis_decision_seconds", Help: "Time to authorise one request (policy plus durable audit write).",
			Buckets: []float64{25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 50e-3},
		}),
		callLat: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "portcullis_upstream_call_seconds", Help: "Upstream round-trip time, by upstream and result.",
			Buckets: prometheus.ExponentialBuckets(100e-6, 2.5, 14),
		}, []string{"upstream", "result"}),
		upstreamUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "portcullis_upstream_up", Help: "1 when the upstream has a live session.",
		}, []string{"upstream"}),
		restarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portcullis_upstream_restarts_total", Help: "Upstream restarts after an exit.",
		}, []string{"upstream"}),
		auditWrites: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portcullis_audit_events_total", Help: "Audit events written, by result.",
		}, []string{"result"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portcullis_refusals_total", Help: "Messages refused before policy, by reason.",
		}, []string{"reason"}),
		sessions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "portcullis_agent_sessions", Help: "Open agent sessions.",
		}),
		screened: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portcullis_screening_detections_total", Help: "Content detections a screening rule acted on, by direction, category and action.",
		}, []string{"direction", "category", "action"}),
		stages: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "portcullis_stage_seconds", Help: "Time spent in each stage of a method's pipeline (relay includes the upstream's answer).",
			Buckets: []float64{2e-6, 5e-6, 10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 5e-3, 25e-3, 100e-3, 1},
		}, []string{"method", "stage"}),
		auditSyncs: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "portcullis_audit_sync_events", Help: "Events each fsync of the audit log made durable (the count is the number of fsyncs), by result.",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 512},
		}, []string{"result"}),
		upSessions: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "portcullis_upstream_sessions", Help: "Open sessions with each upstream.",
		}, []string{"upstream"}),
		queueWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "portcullis_upstream_queue_wait_seconds", Help: "Time calls waited for a slot with the upstream (calls that waited, granted or not), by upstream.",
			Buckets: prometheus.ExponentialBuckets(1e-3, 3, 10),
		}, []string{"upstream"}),
		agentWait: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portcullis_upstream_agent_queue_wait_seconds_total", Help: "Time an agent's calls spent waiting for slots with the upstream, by upstream and agent.",
		}, []string{"upstream", "agent"}),
		shed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portcullis_upstream_shed_total", Help: "Calls refused for want of a slot with the upstream, by upstream, agent and reason (queue_full, queue_timeout).",
		}, []string{"upstream", "agent", "reason"}),
		alerts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portcullis_alerts_total", Help: "Alerts raised, by class and severity (detection speed: alerts are raised on the decision that deviates).",
		}, []string{"class", "severity"}),
		triage: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "portcullis_alert_triage_seconds", Help: "Time to triage: from an alert to its automatic triage (every alert is triaged; the count by backend over portcullis_alerts_total is the share triaged by the model), by verdict and backend.",
			Buckets: prometheus.ExponentialBuckets(1e-3, 4, 10),
		}, []string{"verdict", "backend"}),
		detection: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "portcullis_alert_detection_seconds", Help: "Detection speed: from the deviating decision's record to its alert, by class.",
			Buckets: prometheus.ExponentialBuckets(1e-6, 4, 10),
		}, []string{"class"}),
		contained: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "portcullis_alert_response_seconds", Help: "Dwell time: from the anomalous decision to the response step taken, by action.",
			Buckets: prometheus.ExponentialBuckets(1e-5, 4, 10),
		}, []string{"action"}),
		tier: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "portcullis_posture_tier", Help: "The framework tier each capability reaches (0 none, 1 Foundation, 2 Enterprise, 3 Advanced), as `portcullis posture` computes it, refreshed every few minutes.",
		}, []string{"capability"}),
		outcome: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "portcullis_outcome", Help: "The framework's outcome metrics over the posture window (docs/posture.md), by metric: ratios 0..1, durations in seconds, counts.",
		}, []string{"metric"}),
	}
	m.reg.MustRegister(m.requests, m.decisions, m.decisionLat, m.callLat, m.upstreamUp, m.restarts,
		m.auditWrites, m.refusals, m.sessions, m.screened, m.stages, m.upSessions, m.auditSyncs,
		m.queueWait, m.agentWait, m.shed, m.alerts, m.triage, m.contained, m.detection, m.tier, m.outcome,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Posture sets the tier of each capability and the outcome metrics.
func (m *Metrics) Posture(tiers map[string]int, outcomes map[string]float64) {
	for c, t := range tiers {
		m.tier.WithLabelValues(c).Set(float64(t))
	}
	for k, v := range outcomes {
		m.outcome.WithLabelValues(k).Set(v)
	}
}

// Handler serves the registry in the Prometheus text format.
// Alert counts an alert.
func (m *Metrics) Alert(class, severity string) { m.alerts.WithLabelValues(class, severity).Inc() }

// Triaged records an alert's triage and how long after the alert it came.
func (m *Metrics) Triaged(verdict, backend string, d time.Duration) {
	m.triage.WithLabelValues(verdict, backend).Observe(d.Seconds())
}

// Detected records how long after the deviating decision an alert was
// raised.
func (m *Metrics) Detected(class string, d time.Duration) {
	m.detection.WithLabelValues(class).Observe(max(d, 0).Seconds())
}

// Contained records a response step and how long after the anomalous
// decision it was taken.
func (m *Metrics) Contained(action string, d time.Duration) {
	m.contained.WithLabelValues(action).Observe(d.Seconds())
}

func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{MaxRequestsInFlight: 4})
}

// Request counts one agent request.
func (m *Metrics) Request(method string) {
	if m != nil {
		m.requests.WithLabelValues(method).Inc()
	}
}

// Decision counts one decision and its latency.
func (m *Metrics) Decision(action, outcome string, d time.Duration) {
	if m != nil {
		m.decisions.WithLabelValues(action, outcome).Inc()
		m.decisionLat.Observe(d.Seconds())
	}
}

// UpstreamCall observes one upstream round trip.
func (m *Metrics) UpstreamCall(upstream, result string, d time.Duration) {
	if m != nil {
		m.callLat.WithLabelValues(upstream, result).Observe(d.Seconds())
	}
}

// UpstreamUp records upstream health.
func (m *Metrics) UpstreamUp(upstream string, up bool) {
	if m != nil {
		v := 0.0
		if up {
			v = 1
		}
		m.upstreamUp.WithLabelValues(upstream).Set(v)
	}
}

// UpstreamRestart counts a restart.
func (m *Metrics) UpstreamRestart(upstream string) {
	if m != nil {
		m.restarts.WithLabelValues(upstream).Inc()
	}
}

// AuditWrite counts written (or failed) audit events.
func (m *Metrics) AuditWrite(n int, err error) {
	if m != nil {
		r := "ok"
		if err != nil {
			r = "error"
		}
		m.auditWrites.WithLabelValues(r).Add(float64(n))
	}
}

// Refusal counts a message refused before policy.
func (m *Metrics) Refusal(code reason.Code) {
	if m != nil {
		m.refusals.WithLabelValues(string(code)).Inc()
	}
}

// Sessions adds delta to the open-session gauge.
func (m *Metrics) Sessions(delta int) {
	if m != nil {
		m.sessions.Add(float64(delta))
	}
}

// Screened counts a detection a screening rule acted on.
func (m *Metrics) Screened(direction, category, action string) {
	if m != nil {
		m.screened.WithLabelValues(direction, category, action).Inc()
	}
}

// StageObserver is the latency histogram of one pipeline stage (nil
// without metrics).
func (m *Metrics) StageObserver(method, stage string) prometheus.Observer {
	if m == nil {
		return nil
	}
	return m.stages.WithLabelValues(method, stage)
}

// UpstreamSessions adds delta to the open sessions with an upstream.
func (m *Metrics) UpstreamSessions(upstream string, delta int) {
	if m != nil {
		m.upSessions.WithLabelValues(upstream).Add(float64(delta))
	}
}

// AuditSync observes one fsync of the audit log and the events it covered.
func (m *Metrics) AuditSync(n int, err error) {
	if m != nil {
		r := "ok"
		if err != nil {
			r = "error"
		}
		m.auditSyncs.WithLabelValues(r).Observe(float64(n))
	}
}

// Queued observes a call that waited for a slot with an upstream.
func (m *Metrics) Queued(upstream, agent string, waited time.Duration) {
	if m != nil {
		m.queueWait.WithLabelValues(upstream).Observe(waited.Seconds())
		m.agentWait.WithLabelValues(upstream, agent).Add(waited.Seconds())
	}
}

// Shed counts a call refused for want of a slot with an upstream.
func (m *Metrics) Shed(upstream, agent, reason string) {
	if m != nil {
		m.shed.WithLabelValues(upstream, agent, reason).Inc()
	}
}

// SlotUse is the occupancy of one upstream's slots at scrape time, overall
// and by agent (only agents holding or waiting for a slot).
type SlotUse struct {
	Upstream         string
	InUse, Capacity  int
	Queued, MaxQueue int
	Agents           []AgentSlotUse
}

// AgentSlotUse is one agent's share of an upstream's slots.
type AgentSlotUse struct {
	Agent         string
	InUse, Queued int
}

// WatchSlots reports upstream slot occupancy from read at every scrape:
// the figures cost nothing on the request path.
func (m *Metrics) WatchSlots(read func() []SlotUse) {
	if m != nil {
		m.reg.MustRegister(slotCollector{read})
	}
}

var (
	descSlotsInUse  = prometheus.NewDesc("portcullis_upstream_slots_in_use", "Calls in flight to the upstream.", []string{"upstream"}, nil)
	descSlots       = prometheus.NewDesc("portcullis_upstream_slots", "The upstream's concurrency limit.", []string{"upstream"}, nil)
	descQueueDepth  = prometheus.NewDesc("portcullis_upstream_queue_depth", "Calls waiting for a slot with the upstream.", []string{"upstream"}, nil)
	descQueueBound  = prometheus.NewDesc("portcullis_upstream_queue_limit", "Calls that may wait for a slot with the upstream.", []string{"upstream"}, nil)
	descAgentInUse  = prometheus.NewDesc("portcullis_upstream_agent_slots_in_use", "An agent's calls in flight to the upstream.", []string{"upstream", "agent"}, nil)
	descAgentQueued = prometheus.NewDesc("portcullis_upstream_agent_queue_depth", "An agent's calls waiting for a slot with the upstream.", []string{"upstream", "agent"}, nil)
)

type slotCollector struct{ read func() []SlotUse }

func (c slotCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descSlotsInUse, descSlots, descQueueDepth, descQueueBound, descAgentInUse, descAgentQueued} {
		ch <- d
	}
}

func (c slotCollector) Collect(ch chan<- prometheus.Metric) {
	for _, u := range c.read() {
		ch <- prometheus.MustNewConstMetric(descSlotsInUse, prometheus.GaugeValue, float64(u.InUse), u.Upstream)
		ch <- prometheus.MustNewConstMetric(descSlots, prometheus.GaugeValue, float64(u.Capacity), u.Upstream)
		ch <- prometheus.MustNewConstMetric(descQueueDepth, prometheus.GaugeValue, float64(u.Queued), u.Upstream)
		ch <- prometheus.MustNewConstMetric(descQueueBound, prometheus.GaugeValue, float64(u.MaxQueue), u.Upstream)
		for _, a := range u.Agents {
			ch <- prometheus.MustNewConstMetric(descAgentInUse, prometheus.GaugeValue, float64(a.InUse), u.Upstream, a.Agent)
			ch <- prometheus.MustNewConstMetric(descAgentQueued, prometheus.GaugeValue, float64(a.Queued), u.Upstream, a.Agent)
		}
	}
}
