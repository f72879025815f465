package policy

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/cedar-policy/cedar-go"
	"github.com/cedar-policy/cedar-go/types"

	"github.com/portcullis-dev/portcullis/internal/identity"
	"github.com/portcullis-dev/portcullis/internal/reason"
)

func mustEngine(t *testing.T, text string) *Engine {
	t.Helper()
	s, err := Compile([]Source{{Name: "test.cedar", Data: []byte(text)}})
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	return NewEngine(s)
}

func call(t *testing.T, e *Engine, agent string, roles []string, tool, args string) Decision {
	t.Helper()
	a, err := Arguments([]byte(args))
	if err != nil {
		t.Fatalf("arguments %s: %v", args, err)
	}
	up, _, _ := strings.Cut(tool, "__")
	return e.Decide(&Input{
		Principal: &identity.Principal{Agent: agent, Roles: roles},
		Action:    ActionCallTool,
		Target:    Target{Kind: KindTool, ID: tool, Upstream: up, ReadOnly: strings.Contains(tool, "read")},
		Arguments: a,
	})
}

const testPolicy = `
@id("devs-read")
permit (principal in Role::"devs", action == Action::"call_tool", resource in Upstream::"fs")
when { resource.read_only_hint };

@id("devs-write-src")
permit (principal in Role::"devs", action == Action::"call_tool", resource == Tool::"fs__write")
when { context.arguments has path && context.arguments.path like "/src/*" };

@id("small-amounts")
@reason("amount over limit")
forbid (principal, action == Action::"call_tool", resource == Tool::"bank__pay")
unless { context.arguments has amount && context.arguments.amount < 100 };

@id("pay")
permit (principal == Agent::"treasurer", action == Action::"call_tool", resource == Tool::"bank__pay");
`

func TestDecide(t *testing.T) {
	t.Parallel()
	e := mustEngine(t, testPolicy)
	for _, tc := range []struct {
		name, agent string
		roles       []string
		tool, args  string
		allow       bool
		code        reason.Code
		policy      string
	}{
		{"role permits read", "a", []string{"devs"}, "fs__read", `{}`, true, "", "devs-read"},
		{"no role, default deny", "a", nil, "fs__read", `{}`, false, reason.NoPermit, ""},
		{"argument constraint met", "a", []string{"devs"}, "fs__write", `{"path":"/src/main.go"}`, true, "", "devs-write-src"},
		{"argument constraint not met", "a", []string{"devs"}, "fs__write", `{"path":"/etc/passwd"}`, false, reason.NoPermit, ""},
		{"missing argument does not permit", "a", []string{"devs"}, "fs__write", `{}`, false, reason.NoPermit, ""},
		{"forbid wins", "treasurer", nil, "bank__pay", `{"amount":5000}`, false, reason.Forbidden, "small-amounts"},
		{"under limit", "treasurer", nil, "bank__pay", `{"amount":99}`, true, "", "pay"},
		// A forbid guard that cannot evaluate (wrong type) must not lapse.
		{"erroring forbid fails closed", "treasurer", nil, "bank__pay", `{"amount":"lots"}`, false, reason.PolicyError, ""},
		{"missing guarded argument is forbidden", "treasurer", nil, "bank__pay", `{}`, false, reason.Forbidden, "small-amounts"},
	} {
		d := call(t, e, tc.agent, tc.roles, tc.tool, tc.args)
		if d.Allow != tc.allow || d.Code != tc.code || (tc.policy != "" && !slices.Contains(d.Policies, tc.policy)) {
			t.Errorf("%s: %+v; want allow=%v code=%q policy %q", tc.name, d, tc.allow, tc.code, tc.policy)
		}
		if d.Version == "" {
			t.Errorf("%s: no policy version", tc.name)
		}
	}
}

func TestVisibleIgnoresArgumentsButNotIdentity(t *testing.T) {
	t.Parallel()
	e := mustEngine(t, testPolicy)
	ctx := context.Background()
	vis := func(agent string, roles []string, tool string) bool {
		up, _, _ := strings.Cut(tool, "__")
		return e.Visible(ctx, &Input{Principal: &identity.Principal{Agent: agent, Roles: roles}, Action: ActionCallTool,
			Target: Target{Kind: KindTool, ID: tool, Upstream: up, ReadOnly: strings.Contains(tool, "read")}})
	}
	if !vis("a", []string{"devs"}, "fs__write") {
		t.Error("a tool permitted for some arguments is hidden")
	}
	if !vis("treasurer", nil, "bank__pay") {
		t.Error("a tool with an argument-dependent forbid is hidden")
	}
	if vis("a", nil, "fs__read") || vis("a", []string{"devs"}, "bank__pay") {
		t.Error("a tool the agent can never call is visible")
	}
}

func TestCompileRejectsBadBundles(t *testing.T) {
	t.Parallel()
	for name, text := range map[string]string{
		"syntax":             `permit (principal, action, resource`,
		"unknown action":     `permit (principal, action == Action::"delete_everything", resource);`,
		"unknown type":       `permit (principal == Robot::"x", action, resource);`,
		"duplicate id":       `@id("x") permit (principal, action, resource); @id("x") forbid (principal, action, resource);`,
		"unguarded argument": `permit (principal, action == Action::"call_tool", resource) when { context.arguments.path == "x" };`,
	} {
		if _, err := Compile([]Source{{Name: name, Data: []byte(text)}}); err == nil {
			t.Errorf("%s: compiled", name)
		}
	}
}

func TestVersionChangesWithContent(t *testing.T) {
	t.Parallel()
	a, _ := Compile([]Source{{Name: "a", Data: []byte(`permit (principal, action, resource);`)}})
	b, _ := Compile([]Source{{Name: "a", Data: []byte(`forbid (principal, action, resource);`)}})
	a2, _ := Compile([]Source{{Name: "a", Data: []byte(`permit (principal, action, resource);`)}})
	if a.Version() == b.Version() || a.Version() != a2.Version() || !strings.HasPrefix(a.Version(), "sha256:") {
		t.Errorf("versions %s %s %s", a.Version(), b.Version(), a2.Version())
	}
}

func TestArguments(t *testing.T) {
	t.Parallel()
	r, err := Arguments([]byte(`{"s":"x","n":42,"f":1.5,"b":true,"l":[1,"a",null],"o":{"k":9007199254740993},"z":null}`))
	if err != nil {
		t.Fatal(err)
	}
	want := types.NewRecord(types.RecordMap{
		"s": types.String("x"), "n": types.Long(42), "f": types.String("1.5"), "b": types.True,
		"l": types.NewSet(types.Long(1), types.String("a")),
		"o": types.NewRecord(types.RecordMap{"k": types.Long(9007199254740993)}),
	})
	if !r.Equal(want) {
		t.Errorf("got %v want %v", r, want)
	}
	for _, bad := range []string{`[1]`, `"x"`, `{"a":1} {"b":2}`, `{"a":`, strings.Repeat(`{"a":`, 40) + "1" + strings.Repeat("}", 40)} {
		if _, err := Arguments([]byte(bad)); !errors.Is(err, ErrArguments) {
			t.Errorf("%.40s: err %v", bad, err)
		}
	}
}

// FuzzArguments: any bytes either convert or fail with ErrArguments; never a
// panic. What converts must come from a JSON object.
func FuzzArguments(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":[1,{"b":"c"}]}`, `{"n":1e400}`, `{"n":-0.0}`, `null`, `{"a":"\ud800"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		_, err := Arguments(b)
		if err != nil && !errors.Is(err, ErrArguments) {
			t.Fatalf("unexpected error type: %v", err)
		}
		if err == nil && len(b) > 0 && json.Valid(b) {
			var v any
			json.Unmarshal(b, &v)
			if _, ok := v.(map[string]any); !ok && v != nil {
				t.Fatalf("accepted non-object %s", b)
			}
		}
	})
}

func TestApprovalGuards(t *testing.T) {
	t.Parallel()
	e := mustEngine(t, `
@id("send") permit (principal in Role::"mailers", action == Action::"call_tool", resource == Tool::"mail__send");
@id("external-needs-approval")
@approval("mail leaving the company")
forbid (principal, action == Action::"call_tool", resource == Tool::"mail__send")
unless { context.arguments has to && context.arguments.to like "*@example.com" };
@id("never-to-competitor")
forbid (principal, action == Action::"call_tool", resource == Tool::"mail__send")
when { context.arguments has to && context.arguments.to like "*@competitor.test" };
`)
	for _, tc := range []struct {
		name, agent string
		roles       []string
		args        string
		allow       bool
		code        reason.Code
	}{
		{"internal: allowed", "m", []string{"mailers"}, `{"to":"a@example.com"}`, true, ""},
		{"external: needs approval", "m", []string{"mailers"}, `{"to":"a@partner.test"}`, false, reason.ApprovalRequired},
		{"another forbid applies too: no approval can help", "m", []string{"mailers"}, `{"to":"a@competitor.test"}`, false, reason.Forbidden},
		{"no permit: approval cannot create one", "x", nil, `{"to":"a@partner.test"}`, false, reason.Forbidden},
	} {
		d := call(t, e, tc.agent, tc.roles, "mail__send", tc.args)
		if d.Allow != tc.allow || d.Code != tc.code {
			t.Errorf("%s: %+v", tc.name, d)
		}
		if tc.code == reason.ApprovalRequired && (len(d.Approval) != 1 || d.Approval[0] != "mail leaving the company" || !slices.Contains(d.Policies, "send")) {
			t.Errorf("%s: approval details %+v", tc.name, d)
		}
	}
}

// TestIndexAgreesWithFullEvaluation: evaluating the scope-matched subset
// gives the same decision as evaluating every policy.
func TestIndexAgreesWithFullEvaluation(t *testing.T) {
	t.Parallel()
	e, ins := realisticBundle(t)
	s := e.Current()
	// Add requests that cross roles, agents and upstreams.
	for _, in := range slices.Clone(ins) {
		for _, role := range []string{"role0", "role7", "nobody"} {
			c := *in
			c.Principal = &identity.Principal{Agent: in.Principal.Agent, Roles: []string{role}}
			ins = append(ins, &c)
		}
	}
	for i, in := range ins {
		req, ents, _, err := e.request(in, in.Arguments)
		if err != nil {
			t.Fatal(err)
		}
		full, _ := cedar.Authorize(s.ps, ents, req)
		if got := e.Decide(in); got.Allow != (full == cedar.Allow) {
			t.Fatalf("request %d: indexed %+v, full %v", i, got, full)
		}
	}
}

func TestUserAndTaskInPolicy(t *testing.T) {
	t.Parallel()
	e := mustEngine(t, `@id("alice-only") permit (principal, action == Action::"call_tool", resource)
when { principal has user && principal.user == User::"alice" && principal has task };`)
	in := func(user, task string) *Input {
		return &Input{Principal: &identity.Principal{Agent: "a", User: user, Task: task}, Action: ActionCallTool,
			Target: Target{Kind: KindTool, ID: "u__t", Upstream: "u"}}
	}
	if !e.Decide(in("alice", "t1")).Allow || e.Decide(in("bob", "t1")).Allow || e.Decide(in("", "")).Allow || e.Decide(in("alice", "")).Allow {
		t.Error("user and task attributes not honoured")
	}
}

// TestCachedEntitiesNeverShareAKey: agents and targets whose names differ
// only in where separators fall are different entities, whichever was
// decided first: the entity cache and the policy index key every field by
// its length (with separator-joined keys, an agent with the one role
// "reader\x00writer" was given the cached entity of one with the roles
// "reader" and "writer").
func TestCachedEntitiesNeverShareAKey(t *testing.T) {
	t.Parallel()
	e := mustEngine(t, `permit (principal in Role::"writer", action == Action::"call_tool", resource);
permit (principal == Agent::"b", action == Action::"call_tool", resource) when { resource.upstream == "y" };`)
	decide := func(p *identity.Principal, tool, upstream string) bool {
		return e.Decide(&Input{Principal: p, Action: ActionCallTool, Target: Target{Kind: KindTool, ID: tool, Upstream: upstream}}).Allow
	}
	if !decide(&identity.Principal{Agent: "a", Roles: []string{"reader", "writer"}}, "u__t", "u") {
		t.Fatal("a writer is refused")
	}
	if decide(&identity.Principal{Agent: "a", Roles: []string{"reader\x00writer"}}, "u__t", "u") {
		t.Fatal("an agent whose one role holds the other two names was given their roles")
	}
	// Tool "x" of upstream "u\x00y", then tool "x\x00u" of upstream "y".
	if decide(&identity.Principal{Agent: "b"}, "x", "u\x00y") {
		t.Fatal("a tool of another upstream than y is allowed")
	}
	if !decide(&identity.Principal{Agent: "b"}, "x\x00u", "y") {
		t.Fatal("a tool of upstream y was given another target's cached entity")
	}
}

// TestSelfDelegationIsDecidedAsCedarWould: an agent delegating to itself
// is one entity, principal and resource, with its roles (the fuller of the
// two entities the request names under that UID); the policy
// index matches the resource's scope against those roles as Cedar does
// (a forbid scoped "resource in Role" was left out of the subset while
// the same forbid written as a condition applied).
func TestSelfDelegationIsDecidedAsCedarWould(t *testing.T) {
	t.Parallel()
	for _, forbid := range []string{
		// Before e737b1d the target's entity replaced the principal's, whose
		// roles were then lost: this forbid did not apply.
		`forbid (principal in Role::"admin", action == Action::"delegate", resource);`,
		`forbid (principal, action == Action::"delegate", resource in Role::"admin");`,
		`forbid (principal, action == Action::"delegate", resource) when { resource in Role::"admin" };`,
	} {
		e := mustEngine(t, `permit (principal, action == Action::"delegate", resource);`+"\n"+forbid)
		in := &Input{Principal: &identity.Principal{Agent: "x", Roles: []string{"admin"}}, Action: ActionDelegate,
			Target: Target{Kind: KindAgent, ID: "x"}}
		req, ents, _, err := e.request(in, types.Record{})
		if err != nil {
			t.Fatal(err)
		}
		full, _ := cedar.Authorize(e.Current().ps, ents, req)
		if got := e.Decide(in); got.Allow || full == cedar.Allow {
			t.Fatalf("%s: an admin delegating to itself: indexed %+v, full %v", forbid, got, full)
		}
		other := *in
		other.Target.ID = "y"
		if strings.Contains(forbid, "resource in") && !e.Decide(&other).Allow {
			t.Fatalf("%s: delegating to another agent is refused", forbid)
		}
	}
}

// TestParseErrorsNameTheFile: a Cedar syntax error is placed in its file,
// line and column.
func TestParseErrorsNameTheFile(t *testing.T) {
	t.Parallel()
	_, err := Compile([]Source{{Name: "team/bad.cedar", Data: []byte("permit (principal, action, resource)\nwhen { context.x == };\n")}})
	if err == nil || !strings.Contains(err.Error(), "team/bad.cedar:2:") || strings.Contains(err.Error(), "<input>") {
		t.Fatalf("parse error: %v", err)
	}
}

// TestDefaultPolicyNamesWhatItPermits: the dev policy's read permit does
// not also open sending; sending has its own permit and stays within
// example.com.
func TestDefaultPolicyNamesWhatItPermits(t *testing.T) {
	t.Parallel()
	s, err := Compile([]Source{DefaultSource()})
	if err != nil {
		t.Fatal(err)
	}
	e := NewEngine(s)
	for _, tc := range []struct {
		tool, args, policy string
		allow              bool
	}{
		{"demo__read_file", `{"path":"notes.txt"}`, "dev-demo-read", true},
		{"demo__send_message", `{"to":"bob@example.com","body":"hi"}`, "dev-demo-send", true},
		{"demo__send_message", `{"to":"eve@evil.test","body":"hi"}`, "dev-demo-send-domain", false},
	} {
		d := call(t, e, "demo-agent", []string{"demo"}, tc.tool, tc.args)
		if d.Allow != tc.allow || !slices.Equal(d.Policies, []string{tc.policy}) {
			t.Errorf("%s %s: allow %v by %v, want %v by %s", tc.tool, tc.args, d.Allow, d.Policies, tc.allow, tc.policy)
		}
	}
}

func TestReadsProvenance(t *testing.T) {
	for src, want := range map[string]bool{
		`permit (principal, action, resource);`:                                                             false,
		`forbid (principal, action, resource) when { context.roles.recipient == "untrusted" };`:             true,
		`forbid (principal, action, resource) when { context.untrusted_arguments.contains("to") };`:         true,
		`forbid (principal, action, resource) when { context["roles"]["amount"] == "untrusted" };`:          true,
		`forbid (principal, action, resource) when { context.session.labels.contains("untrusted_input") };`: false,
	} {
		s, err := Compile([]Source{{Name: "p.cedar", Data: []byte(src)}})
		if err != nil {
			t.Fatal(err)
		}
		if s.ReadsProvenance() != want || NewEngine(s).ReadsProvenance() != want {
			t.Errorf("%s: ReadsProvenance %v, want %v", src, s.ReadsProvenance(), want)
		}
	}
}
