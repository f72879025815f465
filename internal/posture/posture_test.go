package posture

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/policy"
)

// baseConfig reaches Enterprise on service authentication (mutual TLS
// with a pinned upstream, TLS towards agents) and screens everything.
const baseConfig = `
version: 1
listen: {tls: {enabled: true}}
agents:
  - {name: support, roles: [support]}
  - {name: payer, roles: [finance]}
upstreams:
  - name: crm
    http: {url: "https://crm.example.com/mcp", ca_file: /etc/ssl/crm-ca.pem, client_certificate: {svid: true}}
  - {name: bank, builtin: demo}
tools:
  - {name: crm__lookup, classification: [read_only], labels: [confidential]}
  - {name: crm__send_email, classification: [sends_externally]}
  - {name: bank__pay, classification: [moves_money]}
  - {name: bank__fetch_page, classification: [read_only], labels: [untrusted_input]}
`

const basePolicy = `
@id("support-reads")
permit (principal in Role::"support", action == Action::"call_tool", resource)
when { resource.read_only_hint || context.arguments has to };
@id("support-mail")
permit (principal in Role::"support", action == Action::"call_tool", resource == Tool::"crm__send_email");
@id("finance-pays")
permit (principal in Role::"finance", action == Action::"call_tool", resource == Tool::"bank__pay");
`

// approvalPolicy holds payments and outgoing mail for a person.
const approvalPolicy = `
@id("pay-needs-approval")
@approval("payments are approved by a person")
forbid (principal, action == Action::"call_tool", resource == Tool::"bank__pay");
@id("mail-needs-approval")
@approval("outgoing mail is approved by a person")
forbid (principal, action == Action::"call_tool", resource == Tool::"crm__send_email");
`

var knownTools = []Tool{
	{Name: "crm__lookup", Upstream: "crm", ReadOnly: true},
	{Name: "crm__send_email", Upstream: "crm", OpenWorld: true},
	{Name: "bank__pay", Upstream: "bank"},
	{Name: "bank__fetch_page", Upstream: "bank", ReadOnly: true, OpenWorld: true},
}

// assessWith assesses configYAML (after edit) under the policies, with
// every agent holding an SVID.
func assessWith(t *testing.T, configYAML, policies string, edit func(*config.Config)) *Report {
	t.Helper()
	cfg, err := config.Parse([]byte(configYAML), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(cfg)
	}
	set, err := policy.Compile([]policy.Source{{Name: "p.cedar", Data: []byte(policies)}})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	f := &Facts{Now: now, Window: DefaultWindow, Config: cfg, ConfigPath: "test.yaml", Rules: set.Rules(), PolicyVersion: set.Version(),
		AgentSVIDs: map[string]int{"support": 1, "payer": 1}, Metrics: &Metrics{}}
	tools := make([]Tool, len(knownTools))
	for i, kt := range knownTools {
		kt.Classes, kt.Labels = classes(cfg, kt), labels(cfg, config.Upstream{}, kt)
		tools[i] = kt
	}
	f.KnownTools = len(tools)
	for _, a := range cfg.Agents {
		r, _ := BlastRadius(cfg, set, tools, a.Name, nil, now)
		f.Reach = append(f.Reach, r)
	}
	return Assess(f)
}

func tierOf(t *testing.T, r *Report, id string) CapabilityResult {
	t.Helper()
	c, ok := r.Capability(id)
	if !ok {
		t.Fatalf("no capability %s", id)
	}
	return c
}

// TestOneChangeMovesOneCapability: a single edit moves the capability it
// concerns, names why, and leaves the others alone.
func TestOneChangeMovesOneCapability(t *testing.T) {
	base := assessWith(t, baseConfig, basePolicy, nil)
	if got := tierOf(t, base, "service_authentication").Tier; got != Enterprise {
		t.Fatalf("base service_authentication %s: %+v", got, tierOf(t, base, "service_authentication"))
	}
	if got := tierOf(t, base, "output_filtering").Tier; got != Enterprise {
		t.Fatalf("base output_filtering %s", got)
	}
	for _, tc := range []struct {
		name, capability string
		edit             func(*config.Config)
		policies         string
		want             Tier
		why              string // in the capability's missing list
	}{
		{"remove mTLS towards the upstream", "service_authentication", func(c *config.Config) { c.Upstreams[0].HTTP.ClientCertificate = nil }, "", Foundation, "crm"},
		{"add a static header secret", "service_authentication", func(c *config.Config) {
			c.Upstreams[0].HTTP.Headers = map[string]config.Value{"X-API-Key": {FromEnv: "CRM_KEY"}}
		}, "", None, "crm (X-API-Key)"},
		{"drop the screening rules", "output_filtering", func(c *config.Config) { c.Screening.Rules = &[]config.ScreeningRule{} }, "", None, "screening of secrets false"},
		{"drop the screening rules (inputs)", "input_sanitization", func(c *config.Config) { c.Screening.Rules = &[]config.ScreeningRule{} }, "", Foundation, "prompt injection"},
		{"enable approvals", "output_filtering", nil, basePolicy + approvalPolicy, Advanced, ""},
		{"turn the sandbox off", "resource_boundaries", func(c *config.Config) {
			c.Upstreams = append(c.Upstreams, config.Upstream{Name: "local", Stdio: &config.StdioServer{Command: "/bin/cat", Sandbox: &config.Sandbox{Mode: config.SandboxNone}}})
		}, "", Foundation, "local"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pol := basePolicy
			if tc.policies != "" {
				pol = tc.policies
			}
			r := assessWith(t, baseConfig, pol, tc.edit)
			got := tierOf(t, r, tc.capability)
			if got.Tier != tc.want {
				t.Fatalf("%s: tier %s, want %s (%+v)", tc.capability, got.Tier, tc.want, got)
			}
			if tc.why != "" && !strings.Contains(strings.Join(got.Missing, "\n"), tc.why) {
				t.Errorf("%s: missing %q does not say %q", tc.capability, got.Missing, tc.why)
			}
			for _, c := range r.Capabilities {
				if c.ID == tc.capability || c.ID == "input_sanitization" || c.ID == "output_filtering" || c.ID == "privilege_scoping" {
					continue // the edited capability, and those that read the same setting
				}
				if b := tierOf(t, base, c.ID); b.Tier != c.Tier {
					t.Errorf("%s moved too: %s -> %s", c.ID, b.Tier, c.Tier)
				}
			}
		})
	}
}

// TestApprovalsCloseStandingAccess: with payments and mail held for a
// person, no high-impact tool is callable without approval.
func TestApprovalsCloseStandingAccess(t *testing.T) {
	find := func(r *Report) CheckResult {
		c := tierOf(t, r, "privilege_scoping")
		for _, ch := range c.Checks {
			if ch.ID == "no-standing-access" {
				return ch
			}
		}
		t.Fatal("no no-standing-access check")
		return CheckResult{}
	}
	open := find(assessWith(t, baseConfig, basePolicy, nil))
	if open.Met || !strings.Contains(open.Evidence, "bank__pay") || !strings.Contains(open.Evidence, "crm__send_email") {
		t.Fatalf("without approvals: %+v", open)
	}
	held := find(assessWith(t, baseConfig, basePolicy+approvalPolicy, nil))
	if !held.Met {
		t.Fatalf("with approvals: %+v", held)
	}
}

func TestTargets(t *testing.T) {
	r := assessWith(t, baseConfig, basePolicy, nil)
	per, err := ParseTargets(map[string]string{"service_authentication": "E", "governance": "F"})
	if err != nil {
		t.Fatal(err)
	}
	r.SetTargets(None, per)
	below := r.Below()
	if len(below) != 1 || below[0].ID != "governance" {
		t.Fatalf("below: %+v", below)
	}
	r.SetTargets(Advanced, nil)
	if len(r.Below()) == 0 {
		t.Fatal("nothing below Advanced")
	}
	for _, bad := range []map[string]string{{"nope": "F"}, {"governance": "Z"}} {
		if _, err := ParseTargets(bad); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

// TestTiersAreCumulative: a capability never reaches a tier whose lower
// tiers are not met, whatever its higher checks say.
func TestTiersAreCumulative(t *testing.T) {
	cs := []CheckResult{{Tier: Foundation, Met: false}, {Tier: Enterprise, Met: true}, {Tier: Advanced, Met: true}}
	if got := reached(cs); got != None {
		t.Fatalf("reached %s", got)
	}
	cs[0].Met = true
	cs = append(cs, CheckResult{Tier: Enterprise, Met: false})
	if got := reached(cs); got != Foundation {
		t.Fatalf("reached %s", got)
	}
}

func TestRenderings(t *testing.T) {
	r := assessWith(t, baseConfig, basePolicy, nil)
	r.Metrics = &Metrics{Window: "168h0m0s", Decisions: 10, Denied: 2, Explained: 10, WithRequestID: 10, Trend: []Day{{Date: "2026-11-30", Decisions: 10, Denied: 2}}}
	var txt, js, html bytes.Buffer
	if err := r.WriteText(&txt); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(txt.String(), "Service authentication") || !strings.Contains(txt.String(), "decisions        10") {
		t.Errorf("text:\n%s", txt.String())
	}
	if err := r.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || len(back.Capabilities) != 15 || back.Capabilities[1].Tier != Enterprise {
		t.Fatalf("json round trip: %v %+v", err, back.Capabilities)
	}
	// A value an attacker could influence (an agent's name) is escaped.
	r.Capabilities[0].Evidence = []string{`<script>alert(1)</script>`}
	if err := r.WriteHTML(&html); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(html.String(), "<script>") || !strings.Contains(html.String(), "&lt;script&gt;") {
		t.Error("the HTML report does not escape evidence")
	}
}

// TestChecksAreDocumented: docs/posture.md names every check.
func TestChecksAreDocumented(t *testing.T) {
	b, err := os.ReadFile("../../docs/posture.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range checks {
		if !strings.Contains(string(b), "| `"+c.capability+"` | ") || !strings.Contains(string(b), "`"+c.id+"`") {
			t.Errorf("check %s/%s is not in docs/posture.md", c.capability, c.id)
		}
	}
}

// TestActionLoggingSaysWhenDecisionsAreOnDisk: the evidence of every
// action logged tells an auditor what a crash of the machine may lose, as
// audit.sync and store.synchronous configure it.
func TestActionLoggingSaysWhenDecisionsAreOnDisk(t *testing.T) {
	t.Parallel()
	for name, c := range map[string]struct {
		edit func(*config.Config)
		want string
	}{
		"default":       {nil, "within 10ms of its commit, the answer not waiting (audit.sync background"},
		"before_answer": {func(c *config.Config) { c.Audit.Sync = config.SyncBeforeAnswer }, "on disk before the agent sees the answer"},
		"before_relay":  {func(c *config.Config) { c.Audit.Sync = config.SyncBeforeRelay }, "on disk before the upstream sees the call"},
		"normal":        {func(c *config.Config) { c.Store.Synchronous = "normal" }, "not fsynced"},
	} {
		var evidence string
		for _, ch := range tierOf(t, assessWith(t, baseConfig, basePolicy, c.edit), "action_logging").Checks {
			if ch.ID == "every-action" {
				evidence = ch.Evidence
			}
		}
		if !strings.Contains(evidence, c.want) {
			t.Errorf("%s: every-action evidence %q, want it to say %q", name, evidence, c.want)
		}
	}
}
