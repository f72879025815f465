package posture

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/portcullis-dev/portcullis/internal/config"
)

// check is one requirement of one tier of one capability.
type check struct {
	capability string
	tier       Tier
	id         string
	// need is what the tier requires, as the report names it when missing.
	need string
	eval func(f *Facts) (met bool, evidence string)
}

// notProvided is a requirement Portcullis cannot meet or observe.
func notProvided(why string) func(*Facts) (bool, string) {
	return func(*Facts) (bool, string) { return false, why }
}

// checks are every capability's tiers, from framework.md §1.3, as this
// product can evidence them (docs/posture.md explains each).
var checks = []check{
	// D1 Agent identity verification.
	{"identity_verification", Foundation, "agents-declared", "every agent declared, authenticating with a credential the gateway verifies cryptographically, and named in every audit event",
		func(f *Facts) (bool, string) {
			n := len(f.Config.Agents)
			if n == 0 {
				return false, "no agent declared"
			}
			return true, fmt.Sprintf("%d agents declared; credentials are signed tokens or X.509-SVIDs from the gateway's CA; every decision event carries the agent", n)
		}},
	{"identity_verification", Enterprise, "svid-per-agent", "an X.509-SVID for every agent (identity.svid_ttl rotation, revocation)",
		func(f *Facts) (bool, string) {
			var without []string
			for _, a := range f.Config.Agents {
				if f.AgentSVIDs[a.Name] == 0 {
					without = append(without, a.Name)
				}
			}
			with := len(f.Config.Agents) - len(without)
			ev := fmt.Sprintf("%d of %d agents hold an active SVID (lifetime %s)", with, len(f.Config.Agents), f.Config.Identity.SVIDTTL.D())
			if len(without) > 0 {
				ev += "; without: " + list(without)
			}
			return len(f.Config.Agents) > 0 && len(without) == 0, ev
		}},
	{"identity_verification", Enterprise, "svid-presented", "agents present their certificate on every connection (listen.tls with client SVIDs)",
		func(f *Facts) (bool, string) {
			if !f.Config.Listen.TLS.Enabled {
				return false, "the agent listener does not serve TLS (listen.tls.enabled: false): certificates cannot be presented"
			}
			return true, "the agent listener serves TLS and accepts client SVIDs (mutual TLS)"
		}},
	{"identity_verification", None, "delegation", "delegation that only narrows, with the chain of actors recorded",
		func(f *Facts) (bool, string) {
			return true, "task delegation by token exchange (RFC 8693) narrows tools, budget and depth; every event carries the act chain"
		}},
	{"identity_verification", Advanced, "hardware-identity", "hardware-backed agent keys with remote attestation (TPM, HSM, enclaves)",
		notProvided("not provided by Portcullis: SVID keys live with the agent's process; no TPM/HSM attestation")},

	// D1 Service authentication.
	{"service_authentication", Foundation, "short-lived-tokens", "agent credentials expire in minutes (auth.max_ttl at most 1h) and refresh without a person",
		func(f *Facts) (bool, string) {
			ttl := f.Config.Auth.MaxTTL.D()
			return ttl <= time.Hour, fmt.Sprintf("agent tokens live at most %s (auth.max_ttl)", ttl)
		}},
	{"service_authentication", Foundation, "no-static-secrets", "no static credential towards an upstream (a fixed API key or bearer header)",
		func(f *Facts) (bool, string) {
			var static []string
			for _, u := range f.Config.Upstreams {
				if u.HTTP == nil || u.HTTP.OAuth != nil {
					continue
				}
				for h := range u.HTTP.Headers {
					if secretHeader(h) {
						static = append(static, u.Name+" ("+h+")")
					}
				}
			}
			slices.Sort(static)
			if len(static) > 0 {
				return false, "static secrets in headers towards " + list(static)
			}
			return true, "no upstream authenticated by a static secret header; secrets in configuration are references, never inline"
		}},
	{"service_authentication", Enterprise, "mtls-upstreams", "mutual TLS towards every HTTP upstream with its certificate pinned (client_certificate, and spki_sha256 or ca_file)",
		func(f *Facts) (bool, string) {
			var weak []string
			n := 0
			for _, u := range f.Config.Upstreams {
				if u.HTTP == nil {
					continue
				}
				n++
				h := u.HTTP
				if h.ClientCertificate == nil || (h.SPKISHA256 == "" && h.CAFile == "") || !strings.HasPrefix(h.URL, "https://") {
					weak = append(weak, u.Name)
				}
			}
			if n == 0 {
				return true, "no HTTP upstream (stdio and built-in upstreams are not reached over a network)"
			}
			if len(weak) > 0 {
				return false, fmt.Sprintf("%d of %d HTTP upstreams without mutual TLS and a pinned certificate: %s", len(weak), n, list(weak))
			}
			return true, fmt.Sprintf("all %d HTTP upstreams: mutual TLS, pinned server", n)
		}},
	{"service_authentication", Enterprise, "mtls-agents", "agents reach the gateway over mutual TLS",
		func(f *Facts) (bool, string) {
			if !f.Config.Listen.TLS.Enabled {
				return false, "listen.tls.enabled is false (a TLS-terminating proxy may stand in front: not visible here)"
			}
			return true, "the agent listener serves TLS with client SVIDs"
		}},
	{"service_authentication", Advanced, "hardware-bound", "hardware-bound credentials with attested issuance",
		notProvided("not provided by Portcullis: credentials are bound to keys (DPoP, mTLS), not to attested hardware")},

	// D2 Permission models.
	{"permission_models", Foundation, "deny-by-default", "deny by default, with no unconditional permit of everything",
		func(f *Facts) (bool, string) {
			var open []string
			for _, r := range f.Rules {
				if !r.Forbid && r.AnyPrincipal && r.AnyAction && r.AnyResource && !r.Conditions {
					open = append(open, r.ID)
				}
			}
			if len(open) > 0 {
				return false, "permit of everything to everyone: " + list(open)
			}
			return true, fmt.Sprintf("Cedar denies what no policy permits; %d policies, none permitting everything", len(f.Rules))
		}},
	{"permission_models", Foundation, "roles", "every agent has a role that policies grant by",
		func(f *Facts) (bool, string) {
			var none []string
			for _, a := range f.Config.Agents {
				if len(a.Roles) == 0 {
					none = append(none, a.Name)
				}
			}
			if len(none) > 0 {
				return false, "agents without a role: " + list(none)
			}
			return len(f.Config.Agents) > 0, fmt.Sprintf("%d agents, each with a role", len(f.Config.Agents))
		}},
	{"permission_models", Enterprise, "attributes", "policies decide on attributes (arguments, data labels, tool class, time, provenance)",
		func(f *Facts) (bool, string) {
			n := 0
			for _, r := range f.Rules {
				if r.Context {
					n++
				}
			}
			if n == 0 {
				return false, "no policy reads the request's context"
			}
			return true, fmt.Sprintf("%d of %d policies decide on the request's context", n, len(f.Rules))
		}},
	{"permission_models", Advanced, "continuous", "authorization on every action, fed by behavioural analytics, revoked at once when risk changes",
		func(f *Facts) (bool, string) {
			d := f.Config.Detection
			contain := false
			for _, r := range d.Response {
				if r.Action != "flag" {
					contain = true
				}
			}
			switch {
			case d.Learning == nil:
				return false, "every action is decided, but no learned baseline feeds the decision (detection.learning)"
			case !contain:
				return false, "learned baselines, but no response rule narrows access on an alert (detection.response)"
			}
			return true, "every message decided; learned baselines score every decision and response rules contain on alerts"
		}},

	// D2 Privilege scoping.
	{"privilege_scoping", Foundation, "least-privilege", "least-privilege roles: no agent may call every tool unconditionally",
		func(f *Facts) (bool, string) {
			var all []string
			for _, r := range f.Reach {
				if r.Tools > 0 && r.Allowed == r.Tools && r.Unconditional == r.Tools {
					all = append(all, r.Agent)
				}
			}
			if len(all) > 0 {
				return false, "may call every known tool without condition: " + list(all)
			}
			return true, fmt.Sprintf("%d agents' reach computed on %d known tools; none may call them all unconditionally", len(f.Reach), f.KnownTools)
		}},
	{"privilege_scoping", Enterprise, "task-scoped", "privileges elevated per task and returned (task tokens or just-in-time grants), every change logged",
		func(f *Facts) (bool, string) {
			if f.TaskTokens+f.Grants == 0 {
				return false, fmt.Sprintf("no task token or grant issued in the last %s", f.Window)
			}
			return true, fmt.Sprintf("%d task tokens and %d just-in-time grants in the last %s, each audited", f.TaskTokens, f.Grants, f.Window)
		}},
	{"privilege_scoping", Advanced, "no-standing-access", "no standing access to high-impact tools: each call needs a task, a grant or a person's approval",
		func(f *Facts) (bool, string) {
			var open []string
			n := 0
			for _, r := range f.Reach {
				n += r.HighImpact
				open = append(open, r.StandingHighImpact...)
			}
			slices.Sort(open)
			open = slices.Compact(open)
			if len(open) > 0 {
				return false, "high-impact tools callable without approval: " + list(open)
			}
			if n == 0 {
				return false, "no high-impact tool is reachable to judge by (classify tools: tools[].classification)"
			}
			return true, fmt.Sprintf("%d reachable high-impact (agent, tool) pairs, each behind an approval", n)
		}},

	// D2 Resource boundaries.
	{"resource_boundaries", Foundation, "identity-isolation", "workloads isolated by identity: no upstream state shared between agents",
		func(f *Facts) (bool, string) {
			var shared []string
			for _, u := range f.Config.Upstreams {
				if u.Isolation == config.IsolationShared {
					shared = append(shared, u.Name)
				}
			}
			if len(shared) > 0 {
				return false, "upstreams shared by every agent's sessions: " + list(shared)
			}
			return true, fmt.Sprintf("%d upstreams, each session-, agent- or user-isolated; only authenticated agents reach the gateway", len(f.Config.Upstreams))
		}},
	{"resource_boundaries", Enterprise, "sandboxed", "every tool server sandboxed, its filesystem and network limited",
		func(f *Facts) (bool, string) {
			var open []string
			n, egress := 0, 0
			for _, u := range f.Config.Upstreams {
				if u.Stdio == nil {
					continue
				}
				n++
				sb := u.Stdio.Sandbox
				if sb != nil && sb.Mode == config.SandboxNone {
					open = append(open, u.Name)
				}
				if sb != nil && len(sb.Egress) > 0 {
					egress++
				}
			}
			if len(open) > 0 {
				return false, "stdio servers without a sandbox (sandbox.mode: none): " + list(open)
			}
			return true, fmt.Sprintf("%d stdio servers sandboxed (namespaces, Landlock, seccomp; %d with an egress allow-list, the others no network)", n, egress)
		}},
	{"resource_boundaries", Advanced, "hardware-isolation", "hardware isolation (microVMs, confidential computing) with attestation",
		func(f *Facts) (bool, string) {
			n, rt := 0, 0
			for _, u := range f.Config.Upstreams {
				if u.Stdio != nil {
					n++
					if u.Stdio.Sandbox != nil && u.Stdio.Sandbox.Mode == config.SandboxRuntime {
						rt++
					}
				}
			}
			return false, fmt.Sprintf("%d of %d stdio servers under an external runtime (a microVM or gVisor); attestation of the environment is not verified by Portcullis", rt, n)
		}},

	// D3 Action logging.
	{"action_logging", Foundation, "every-action", "every tool call, data access and external communication logged with agent, action and request context",
		func(f *Facts) (bool, string) {
			onDisk := durability(f.Config)
			if f.Metrics == nil || f.Metrics.Events == 0 {
				return true, "every decision is an audit event before it takes effect (none recorded yet); " + onDisk
			}
			return true, fmt.Sprintf("%d audit events; every decision recorded before it takes effect, with agent, user, task, request and policy version; %s", f.Metrics.Events, onDisk)
		}},
	{"action_logging", Enterprise, "tamper-evident", "append-only log with cryptographic integrity verification",
		func(f *Facts) (bool, string) {
			if f.Checkpoint == nil {
				return false, "no signed checkpoint yet (the gateway signs one every audit.checkpoint_interval)"
			}
			return true, fmt.Sprintf("Merkle tree of %d events, latest signed checkpoint %s", f.Checkpoint.Size, f.Checkpoint.Time.Format(time.RFC3339))
		}},
	{"action_logging", Enterprise, "replicated", "log integrity replicated so that no single point can tamper with it (checkpoint copies or a witness, or export)",
		func(f *Facts) (bool, string) {
			a := f.Config.Audit
			if len(a.CheckpointCopies) == 0 && a.CheckpointURL == "" && len(a.Export) == 0 {
				return false, "checkpoints and events stay on this host (audit.checkpoint_copies, audit.checkpoint_url, audit.export)"
			}
			return true, fmt.Sprintf("%d checkpoint copies, witness %v, %d export sinks", len(a.CheckpointCopies), a.CheckpointURL != "", len(a.Export))
		}},
	{"action_logging", Advanced, "siem", "real-time streaming to a SIEM with correlation and alerting",
		func(f *Facts) (bool, string) {
			if len(f.Config.Audit.Export) == 0 {
				return false, "no audit.export sink streams events"
			}
			if !detecting(f.Config) {
				return false, fmt.Sprintf("%d export sinks, but no detection correlates activity (detection)", len(f.Config.Audit.Export))
			}
			return true, fmt.Sprintf("%d export sinks stream every event (OCSF); detection correlates and alerts", len(f.Config.Audit.Export))
		}},

	// D3 Traceability.
	{"traceability", Foundation, "request-ids", "a request ID on every action, filterable by chain",
		func(f *Facts) (bool, string) {
			if f.Metrics == nil || f.Metrics.Decisions == 0 {
				return true, "every decision carries a request ID (none recorded yet)"
			}
			return f.Metrics.WithRequestID == f.Metrics.Decisions, fmt.Sprintf("%s of decisions carry a request ID (`portcullis audit trace`)", pct(f.Metrics.WithRequestID, f.Metrics.Decisions))
		}},
	{"traceability", Enterprise, "distributed-tracing", "distributed tracing across agents (OpenTelemetry)",
		func(f *Facts) (bool, string) {
			if f.Config.Telemetry.OTLP == nil {
				return false, "telemetry.otlp is not set (W3C trace context is recorded, spans are not exported)"
			}
			return true, "spans of every request exported over OTLP; W3C trace IDs in the audit log"
		}},
	{"traceability", Advanced, "provenance-replay", "provenance from input to output, and decisions replayable",
		func(f *Facts) (bool, string) {
			prov := false
			for _, r := range f.Rules {
				if strings.Contains(r.Text, "untrusted_arguments") || strings.Contains(r.Text, "context.roles") || strings.Contains(r.Text, "labels") {
					prov = true
				}
			}
			if !prov {
				return false, "decisions are replayable (`portcullis audit replay`), but no policy reads data-flow labels or argument provenance"
			}
			return true, "decisions carry their inputs and replay under any bundle; policies read labels and argument provenance"
		}},

	// D4 Baseline establishment.
	{"baseline_establishment", Foundation, "declared", "expected behaviour declared for every agent",
		func(f *Facts) (bool, string) {
			var without []string
			for _, a := range f.Config.Agents {
				if !declared(f.Config, a) {
					without = append(without, a.Name)
				}
			}
			if len(f.Config.Agents) == 0 || len(without) > 0 {
				return false, "agents without a declared baseline (detection.baselines): " + list(without)
			}
			return true, fmt.Sprintf("%d declared baselines cover all %d agents", len(f.Config.Detection.Baselines), len(f.Config.Agents))
		}},
	{"baseline_establishment", Enterprise, "learned", "baselines learned from normal operation",
		func(f *Facts) (bool, string) {
			if f.Config.Detection.Learning == nil {
				return false, "detection.learning is not set"
			}
			ev := "learned baselines on (tool mix, transitions, rate, hours, upstreams, delegators)"
			if !f.BaselinesSaved.IsZero() {
				ev += ", last saved " + f.BaselinesSaved.UTC().Format(time.RFC3339)
			}
			return true, ev
		}},
	{"baseline_establishment", Advanced, "drift", "continuous refinement with drift detection and a known-good recovery point",
		func(f *Facts) (bool, string) {
			if f.Config.Detection.Learning == nil {
				return false, "needs learned baselines"
			}
			if f.BaselinesSaved.IsZero() {
				return false, "drift detection on, but no baseline snapshot saved yet to restore from"
			}
			return true, "drift (Page-Hinkley) watched on every profile; snapshot kept (`portcullis baseline export|restore`)"
		}},

	// D4 Anomaly detection.
	{"anomaly_detection", Foundation, "thresholds-triage", "threshold alerts, each triaged automatically before a person sees it",
		func(f *Facts) (bool, string) {
			if !detecting(f.Config) {
				return false, "no detection configured (detection.baselines, learning or response)"
			}
			ev := "threshold alerts (rate, denial bursts, unexpected tools, hours) with deterministic first-pass triage of every alert"
			if f.Metrics != nil && f.Metrics.Alerts > 0 {
				ev += fmt.Sprintf("; %s of %d alerts triaged", pct(f.Metrics.Triaged, f.Metrics.Alerts), f.Metrics.Alerts)
			}
			return true, ev
		}},
	{"anomaly_detection", Enterprise, "statistical", "statistical anomaly detection with tunable sensitivity, correlated across metrics",
		func(f *Facts) (bool, string) {
			l := f.Config.Detection.Learning
			if l == nil {
				return false, "detection.learning is not set"
			}
			return true, fmt.Sprintf("learned-baseline scoring across metrics (sensitivity %g, threshold %g)", l.Sensitivity, l.Threshold)
		}},
	{"anomaly_detection", Advanced, "contextual", "behavioural analysis aware of context (time, user, business cycles) with model-assisted triage",
		func(f *Facts) (bool, string) {
			if f.Config.Detection.Learning == nil || f.Config.Detection.Triage == nil {
				return false, "needs learned baselines (hour-of-day, per-user sessions) and model triage (detection.triage)"
			}
			return true, "hour-of-day and per-session profiles, model-backed triage agent"
		}},

	// D4 Automated response.
	{"automated_response", Foundation, "triage-to-soc", "alerts reach security operations with a structured disposition",
		func(f *Facts) (bool, string) {
			d := f.Config.Detection
			if !detecting(f.Config) {
				return false, "no detection configured"
			}
			if d.Notify == nil && len(f.Config.Audit.Export) == 0 {
				return false, "alerts stay in the audit log: no detection.notify or audit.export reaches a person"
			}
			return true, "every alert triaged (verdict, confidence, recommendation) and sent on (notify or export)"
		}},
	{"automated_response", Enterprise, "containment", "automatic containment: session termination and access revocation",
		func(f *Facts) (bool, string) {
			var steps []string
			for _, r := range f.Config.Detection.Response {
				if r.Action == "terminate_session" || r.Action == "read_only" || r.Action == "require_approval" || (config.HighImpact(r.Action) && r.Automatic) {
					steps = append(steps, r.Action)
				}
			}
			if len(steps) == 0 {
				return false, "no response rule contains automatically"
			}
			slices.Sort(steps)
			return true, "automatic steps: " + list(slices.Compact(steps))
		}},
	{"automated_response", Advanced, "graduated", "graduated playbooks by severity, coordinated across systems",
		func(f *Facts) (bool, string) {
			d := f.Config.Detection
			acts := map[string]bool{}
			for _, r := range d.Response {
				acts[r.Action] = true
			}
			if len(acts) < 2 || d.Notify == nil {
				return false, fmt.Sprintf("%d distinct response steps; notify %v (needs two or more graduated steps and detection.notify)", len(acts), d.Notify != nil)
			}
			return true, fmt.Sprintf("%d graduated response steps, notifications to other systems", len(acts))
		}},

	// D5 Input sanitization.
	{"input_sanitization", Foundation, "schemas-limits", "inputs validated against schemas, with length limits",
		func(f *Facts) (bool, string) {
			l := f.Config.Limits
			return true, fmt.Sprintf("arguments checked against each tool's input schema; messages at most %d bytes, depth %d", l.MaxMessageBytes, l.MaxJSONDepth)
		}},
	{"input_sanitization", Enterprise, "injection-patterns", "known attack patterns filtered, encoded payloads included",
		func(f *Facts) (bool, string) {
			if !screens(f.Config, "prompt_injection") {
				return false, "no screening rule detects prompt injection"
			}
			return true, "prompt injection screened in tool results and resources (normalised: Base64, hex, Unicode tricks)"
		}},
	{"input_sanitization", Advanced, "multi-layer", "several detection layers and spotlighting of untrusted content",
		func(f *Facts) (bool, string) {
			var spot []string
			for _, u := range f.Config.Upstreams {
				if u.Spotlight != "" {
					spot = append(spot, u.Name)
				}
			}
			if !screens(f.Config, "prompt_injection") || len(spot) == 0 {
				return false, fmt.Sprintf("spotlighting on %d upstreams (upstreams[].spotlight); injection screening %v", len(spot), screens(f.Config, "prompt_injection"))
			}
			return true, "injection screening, data-flow labels and argument provenance, spotlighting on " + list(spot)
		}},

	{"input_sanitization", None, "memory", "agent memory with provenance, quarantine of untrusted writes, expiry and integrity checks",
		func(f *Facts) (bool, string) {
			for _, u := range f.Config.Upstreams {
				if u.Builtin == "memory" {
					return true, "agent memory served by the built-in memory upstream: provenance per element, untrusted writes quarantined, TTLs, hashes checked on read"
				}
			}
			return false, "no agent memory is served through Portcullis (builtin: memory)"
		}},

	// D5 Output filtering.
	{"output_filtering", Foundation, "pii-secrets", "personal data and credentials filtered out, every filtering logged",
		func(f *Facts) (bool, string) {
			if !screens(f.Config, "secret") || !screens(f.Config, "personal_data") {
				return false, fmt.Sprintf("screening of secrets %v, personal data %v", screens(f.Config, "secret"), screens(f.Config, "personal_data"))
			}
			return true, "secrets and personal data masked or blocked, each action a screening event"
		}},
	{"output_filtering", Enterprise, "exfiltration", "attempts to encode or smuggle sensitive data detected",
		func(f *Facts) (bool, string) {
			if !screens(f.Config, "exfiltration") {
				return false, "no screening rule detects exfiltration (encoded data, markdown beacons)"
			}
			return true, "exfiltration screening in arguments and results"
		}},
	{"output_filtering", Advanced, "human-approval", "a person approves high-risk actions, decisions logged",
		func(f *Facts) (bool, string) {
			n := 0
			for _, r := range f.Rules {
				if r.Approval {
					n++
				}
			}
			if n == 0 {
				return false, "no @approval policy holds a call for a person"
			}
			return true, fmt.Sprintf("%d @approval policies hold high-risk calls for a reviewer; approvals audited", n)
		}},

	// D6 Configuration integrity.
	{"configuration_integrity", Foundation, "version-control", "configuration under version control, changes reviewed",
		func(f *Facts) (bool, string) {
			if f.Dev {
				return false, "the embedded development configuration (--dev) is not under version control"
			}
			if f.VersionControl == "" {
				return false, "no Git repository holds " + f.ConfigPath
			}
			return true, "the configuration is in the Git repository at " + f.VersionControl + "; every start records its SHA-256"
		}},
	{"configuration_integrity", Enterprise, "signed", "configuration signed, verified before use, unsigned refused",
		func(f *Facts) (bool, string) {
			var miss []string
			if !f.Config.Policy.RequireSigned {
				miss = append(miss, "policy.require_signed")
			}
			if !f.Config.Manifests.RequireSigned {
				miss = append(miss, "manifests.require_signed")
			}
			if len(miss) > 0 {
				return false, "not required: " + list(miss)
			}
			return true, "policy bundles and tool manifests must be signed by trusted keys; unsigned ones are refused"
		}},
	{"configuration_integrity", None, "tool-pinning", "tool definitions pinned, a changed definition quarantined (rug pulls)",
		func(f *Facts) (bool, string) {
			return true, fmt.Sprintf("tool pinning %s: %d definitions approved, %d quarantined", f.Config.Pinning, f.PinsApproved, f.PinsQuarantined)
		}},
	{"configuration_integrity", Advanced, "immutable", "immutable deployment with attested integrity",
		notProvided("not provided by Portcullis: the binary and its configuration are not attested at start")},

	// D6 Recovery.
	{"recovery", Foundation, "rollback", "previous versions kept and a documented rollback",
		func(f *Facts) (bool, string) {
			if f.Bundles == 0 {
				return false, "no policy bundle stored yet to roll back to (the gateway stores each it loads)"
			}
			return true, fmt.Sprintf("%d policy bundles kept (`portcullis policy rollback`), baseline snapshots, tool pins", f.Bundles)
		}},
	{"recovery", Enterprise, "automatic-rollback", "automatic rollback on a failed change, with health checks",
		func(f *Facts) (bool, string) {
			return true, "a bundle that fails to compile or verify is refused and the last good one stays in force across restarts; /readyz"
		}},
	{"recovery", Advanced, "self-healing", "self-healing with circuit breakers isolating failing components",
		func(f *Facts) (bool, string) {
			for _, r := range f.Config.Detection.Response {
				if r.Action == "quarantine_upstream" && r.Automatic {
					return true, "crashed servers restarted with backoff; an upstream quarantined automatically on alerts (circuit breaker)"
				}
			}
			return false, "crashed servers restart with backoff, but no automatic quarantine_upstream rule isolates a misbehaving one"
		}},

	// D6 AI governance.
	{"governance", Foundation, "documented", "acceptable-use and incident-response policies documented, approvers named",
		func(f *Facts) (bool, string) {
			g := f.Config.Governance
			var miss []string
			if g.AcceptableUse == "" {
				miss = append(miss, "acceptable_use")
			}
			if g.IncidentResponse == "" {
				miss = append(miss, "incident_response")
			}
			if len(g.Approvers) == 0 {
				miss = append(miss, "approvers")
			}
			if len(miss) > 0 {
				return false, "governance." + strings.Join(miss, ", governance.") + " not set (templates: docs/governance/)"
			}
			return true, fmt.Sprintf("acceptable use %s, incident response %s, %d approvers", g.AcceptableUse, g.IncidentResponse, len(g.Approvers))
		}},
	{"governance", Enterprise, "reviewed", "formal oversight: onboarding approval, an emergency change procedure and a policy review within the year",
		func(f *Facts) (bool, string) {
			g := f.Config.Governance
			if g.Onboarding == "" || g.EmergencyChange == "" || g.Reviewed == "" {
				return false, "governance.onboarding, governance.emergency_change and governance.reviewed (date of the last policy review) not all set"
			}
			t, err := time.Parse(time.DateOnly, g.Reviewed)
			if err != nil || f.Now.Sub(t) > 366*24*time.Hour {
				return false, "last review " + g.Reviewed + ": more than a year ago"
			}
			return true, "onboarding " + g.Onboarding + ", emergency change " + g.EmergencyChange + ", last reviewed " + g.Reviewed
		}},
	{"governance", Advanced, "automated", "policy enforced in the pipeline: signed changes, strict pinning, posture checked",
		func(f *Facts) (bool, string) {
			c := f.Config
			if !c.Policy.RequireSigned || c.Pinning != "strict" {
				return false, fmt.Sprintf("policy.require_signed %v, pinning %q (needs signed bundles and strict pinning; run `portcullis posture --min-tier` in CI)", c.Policy.RequireSigned, c.Pinning)
			}
			return true, "signed bundles, strict pinning; `portcullis posture --min-tier` gates the pipeline"
		}},
}

// secretHeader reports whether a header name carries a credential.
func secretHeader(h string) bool {
	h = strings.ToLower(h)
	for _, s := range []string{"authorization", "api-key", "apikey", "token", "secret", "password", "cookie"} {
		if strings.Contains(h, s) {
			return true
		}
	}
	return false
}

// detecting reports whether detection is on.
func detecting(c *config.Config) bool {
	d := c.Detection
	return len(d.Baselines) > 0 || d.Learning != nil || len(d.Response) > 0
}

// declared reports whether a baseline covers agent a.
func declared(c *config.Config, a config.Agent) bool {
	for _, b := range c.Detection.Baselines {
		if b.Agent == a.Name || b.Role != "" && slices.Contains(a.Roles, b.Role) {
			return true
		}
	}
	return false
}

// screens reports whether screening acts on a category: the default rules
// cover every category; an explicit list must name it with an action.
func screens(c *config.Config, category string) bool {
	rs := c.Screening.Rules
	if rs == nil {
		return true
	}
	for _, r := range *rs {
		if r.Category == category && r.Action != "" && r.Action != "allow" {
			return true
		}
	}
	return false
}

func list(s []string) string {
	if len(s) > 8 {
		return strings.Join(s[:8], ", ") + fmt.Sprintf(" and %d more", len(s)-8)
	}
	return strings.Join(s, ", ")
}

func pct(n, of int) string {
	if of == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.1f%%", 100*float64(n)/float64(of))
}

// durability says when an allowed call's decision is on disk, as
// audit.sync and store.synchronous set it: an auditor's question.
func durability(c *config.Config) string {
	if c == nil {
		return "durability not known"
	}
	switch {
	case c.Store.Postgres == nil && c.Store.Synchronous == "normal":
		return "not fsynced (store.synchronous normal: a crash of the machine may lose events)"
	case c.Audit.Sync == config.SyncBeforeRelay:
		return "on disk before the upstream sees the call (audit.sync before_relay)"
	case c.Audit.Sync == config.SyncBeforeAnswer:
		return "on disk before the agent sees the answer (audit.sync before_answer)"
	case c.Audit.Sync == config.SyncBackground:
		return fmt.Sprintf("fsynced within %v of its commit, the answer not waiting (audit.sync background: a crash of the machine may lose that window's allowed calls, never a denial)", c.Audit.SyncWindow.D())
	}
	return "durability not known (audit.sync " + c.Audit.Sync + ")"
}
