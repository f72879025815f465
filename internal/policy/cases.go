package policy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/portcullis-dev/portcullis/internal/identity"
)

// MaxCasesBytes bounds a policy test file.
const MaxCasesBytes = 4 << 20

// CaseFile is a policy test file (`portcullis policy test`): the bundle to
// test and the cases, each a request and the decision it must get.
type CaseFile struct {
	// Policies are files or directories, relative to the case file.
	Policies []string `json:"policies,omitempty"`
	Cases    []Case   `json:"cases"`
}

// Case is one request and its expected decision.
type Case struct {
	Name      string          `json:"name"`
	Agent     string          `json:"agent"`
	Roles     []string        `json:"roles,omitempty"`
	Upstream  string          `json:"upstream,omitempty"` // principal for server requests
	Action    string          `json:"action"`
	Resource  CaseResource    `json:"resource"`
	Arguments json.RawMessage `json:"arguments,omitempty"`
	// Labels are the session's data-flow labels.
	Labels []string `json:"labels,omitempty"`
	// UntrustedArguments name arguments whose values came from untrusted output.
	UntrustedArguments []string `json:"untrusted_arguments,omitempty"`
	// Provenance gives the origin of arguments by role (context.roles):
	// {recipient: untrusted, amount: trusted}.
	Provenance map[string]string `json:"provenance,omitempty"`
	// Findings are screening detections in the arguments.
	Findings []string `json:"findings,omitempty"`
	// RiskScore is the detection score in context.
	RiskScore int64 `json:"risk_score,omitempty"`
	// Time is when the request happens (RFC 3339); default: now.
	Time string `json:"time,omitempty"`
	// Expect is "allow" or "deny".
	Expect string `json:"expect"`
	// ExpectPolicies, if set, must all be among the deciding policies.
	ExpectPolicies []string `json:"expect_policies,omitempty"`
}

// CaseResource is the target of a case.
type CaseResource struct {
	Kind        string `json:"kind"` // Tool, Resource, Prompt, Agent
	ID          string `json:"id"`
	Upstream    string `json:"upstream,omitempty"`
	ReadOnly    bool   `json:"read_only_hint,omitempty"`
	Destructive bool   `json:"destructive_hint,omitempty"`
	OpenWorld   bool   `json:"open_world_hint,omitempty"`
	// Classification overrides the classes derived from the hints.
	Classification []string `json:"classification,omitempty"`
}

// LoadCases reads a case file strictly and resolves its policy paths.
func LoadCases(path string) (*CaseFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read cases: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxCasesBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read cases: %w", err)
	}
	if len(b) > MaxCasesBytes {
		return nil, fmt.Errorf("read cases: %s exceeds %d bytes", path, MaxCasesBytes)
	}
	var cf CaseFile
	if err := yaml.UnmarshalStrict(b, &cf); err != nil {
		return nil, fmt.Errorf("read cases %s: %w", path, err)
	}
	for i, p := range cf.Policies {
		if !filepath.IsAbs(p) {
			cf.Policies[i] = filepath.Join(filepath.Dir(path), p)
		}
	}
	for i, c := range cf.Cases {
		if c.Expect != "allow" && c.Expect != "deny" {
			return nil, fmt.Errorf("case %d (%s): expect must be allow or deny", i+1, c.Name)
		}
	}
	return &cf, nil
}

// Input builds the decision input of a case.
func (c Case) Input() (*Input, error) {
	args, err := Arguments(c.Arguments)
	if err != nil {
		return nil, fmt.Errorf("case %s: %w", c.Name, err)
	}
	in := &Input{
		Action: c.Action, Arguments: args, Method: "test", Labels: c.Labels, UntrustedArguments: c.UntrustedArguments, Provenance: c.Provenance, Findings: c.Findings, RiskScore: c.RiskScore,
		Target: Target{Kind: c.Resource.Kind, ID: c.Resource.ID, Upstream: c.Resource.Upstream,
			ReadOnly: c.Resource.ReadOnly, Destructive: c.Resource.Destructive, OpenWorld: c.Resource.OpenWorld,
			Classes: c.Resource.Classification},
	}
	if c.Time != "" {
		t, err := time.Parse(time.RFC3339, c.Time)
		if err != nil {
			return nil, fmt.Errorf("case %s: time: %w", c.Name, err)
		}
		in.Now = t
	}
	if c.Upstream != "" {
		in.Upstream = c.Upstream
	} else {
		in.Principal = &identity.Principal{Agent: c.Agent, Roles: c.Roles}
	}
	return in, nil
}

// Result is the outcome of one case.
type Result struct {
	Case     Case
	Decision Decision
	Pass     bool
	Why      string
}

// Run evaluates every case against e.
func (cf *CaseFile) Run(e *Engine) ([]Result, error) {
	var out []Result
	for _, c := range cf.Cases {
		in, err := c.Input()
		if err != nil {
			return nil, err
		}
		d := e.Decide(in)
		r := Result{Case: c, Decision: d, Pass: true}
		got := "deny"
		if d.Allow {
			got = "allow"
		}
		if got != c.Expect {
			r.Pass, r.Why = false, fmt.Sprintf("got %s (%s), want %s", got, d.Code, c.Expect)
		}
		for _, p := range c.ExpectPolicies {
			if !slices.Contains(d.Policies, p) {
				r.Pass = false
				r.Why += fmt.Sprintf(" policy %q did not decide (deciding: %v)", p, d.Policies)
			}
		}
		out = append(out, r)
	}
	return out, nil
}

// Explain renders a decision for a person: outcome, the deciding policies
// with their source text, reasons and errors.
func (e *Engine) Explain(in *Input) (Decision, string) {
	d := e.Decide(in)
	var b bytes.Buffer
	outcome := "DENY"
	if d.Allow {
		outcome = "ALLOW"
	}
	fmt.Fprintf(&b, "%s", outcome)
	if d.Code != "" {
		fmt.Fprintf(&b, " (%s)", d.Code)
	}
	fmt.Fprintf(&b, " under policy %s\n", d.Version)
	if len(d.Policies) == 0 && !d.Allow {
		fmt.Fprintln(&b, "no permit policy applies: denied by default")
	}
	s := e.Current()
	for _, id := range d.Policies {
		fmt.Fprintf(&b, "\ndecided by %q:\n%s\n", id, s.text(id))
	}
	for _, r := range d.Reasons {
		fmt.Fprintf(&b, "reason: %s\n", r)
	}
	for _, er := range d.Errors {
		fmt.Fprintf(&b, "error: %s\n", er)
	}
	return d, b.String()
}
