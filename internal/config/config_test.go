package config

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/jsonschema-go/jsonschema"
	"sigs.k8s.io/yaml"

	"github.com/portcullis-dev/portcullis/internal/screen"
)

func TestParseAppliesDefaults(t *testing.T) {
	t.Parallel()
	c, err := Parse([]byte("version: 1\n"), "/etc/portcullis")
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen.Address != DefaultListenAddress || c.Limits.MaxJSONDepth != DefaultMaxJSONDepth ||
		c.Auth.MaxTTL.D() != time.Hour || c.Path("data") != "/etc/portcullis/data" {
		t.Errorf("defaults not applied: %+v", c)
	}
}

func TestParseRejects(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct{ yaml, want string }{
		"no version":              {"listen: {}\n", "version"},
		"sandbox mode":            {"version: 1\nupstreams: [{name: a, stdio: {command: x, sandbox: {mode: chroot}}}]\n", "not builtin, runtime or none"},
		"sandbox relative path":   {"version: 1\nupstreams: [{name: a, stdio: {command: x, sandbox: {read_write: [files]}}}]\n", "not an absolute path"},
		"sandbox data dir":        {"version: 1\ndata_dir: /srv/pc\nupstreams: [{name: a, stdio: {command: x, sandbox: {read_only: [/srv]}}}]\n", "data directory"},
		"sandbox inside data":     {"version: 1\ndata_dir: /srv/pc\nupstreams: [{name: a, stdio: {command: x, sandbox: {read_write: [/srv/pc/keys]}}}]\n", "data directory"},
		"runtime without command": {"version: 1\nupstreams: [{name: a, stdio: {command: x, sandbox: {mode: runtime}}}]\n", "runtime's command is required"},
		"egress without a port":   {"version: 1\nupstreams: [{name: a, stdio: {command: x, sandbox: {egress: [api.example.com]}}}]\n", "want HOST:PORT"},
		"egress bad host":         {"version: 1\nupstreams: [{name: a, stdio: {command: x, sandbox: {egress: ['*.*.example.com:443']}}}]\n", "not a host name"},
		"egress without sandbox":  {"version: 1\nupstreams: [{name: a, stdio: {command: x, sandbox: {mode: none, egress: ['api.example.com:443']}}}]\n", "only with mode builtin"},
		"client cert both":        {"version: 1\nupstreams: [{name: a, http: {url: 'https://x', client_certificate: {svid: true, cert_file: c, key_file: k}}}]\n", "svid: true, or cert_file"},
		"client cert half":        {"version: 1\nupstreams: [{name: a, http: {url: 'https://x', client_certificate: {cert_file: c}}}]\n", "go together"},
		"ca file over http":       {"version: 1\nupstreams: [{name: a, http: {url: 'http://x', ca_file: ca.pem}}]\n", "need an https URL"},
		"memory shared name":      {"version: 1\nmemory: {shared: [Team]}\n", "memory.shared[0]"},
		"triage unknown agent":    {"version: 1\ndetection: {triage: {model: m, api_key: {from_env: K}, agent: ghost}}\n", "not a configured agent"},
		"learning window":         {"version: 1\ndetection: {learning: {window: 10s}}\n", "at least 1m"},
		"unknown field":           {"version: 1\nlimts: {}\n", "unknown field"},
		"nested unknown":          {"version: 1\nlimits: {max_bytes: 1}\n", "unknown field"},
		"bare number ttl":         {"version: 1\nauth: {max_ttl: 60}\n", "duration"},
		"two transports":          {"version: 1\nupstreams: [{name: a, builtin: demo, stdio: {command: x}}]\n", "exactly one"},
		"no transport":            {"version: 1\nupstreams: [{name: a}]\n", "exactly one"},
		"duplicate":               {"version: 1\nupstreams: [{name: a, builtin: demo}, {name: a, builtin: demo}]\n", "duplicate"},
		"inline auth":             {"version: 1\nupstreams: [{name: a, http: {url: 'https://x', headers: {Authorization: {value: s}}}}]\n", "looks like a secret"},
		"inline env secret":       {"version: 1\nupstreams: [{name: a, stdio: {command: x, env: {API_KEY: {value: s}}}}]\n", "looks like a secret"},
		"bad url":                 {"version: 1\nupstreams: [{name: a, http: {url: 'file:///etc/passwd'}}]\n", "http(s)"},
		"url without host":        {"version: 1\nupstreams: [{name: a, http: {url: 'http:///mcp'}}]\n", "must name a host"},
		"negative limit":          {"version: 1\nlimits: {max_batch: -1}\n", "positive"},
		"agent name":              {"version: 1\nagents: [{name: 'a b'}]\n", "must match"},
		"upstream label":          {"version: 1\nupstreams: [{name: a, builtin: demo, labels: [Untrusted]}]\n", "label"},
		"tool label":              {"version: 1\ntools: [{name: a__b, labels: ['x y']}]\n", "label"},
		"spotlight mode":          {"version: 1\nupstreams: [{name: a, builtin: demo, spotlight: bold}]\n", "delimit or datamark"},
		"upstream classifier":     {"version: 1\nupstreams: [{name: a, builtin: demo, classifier: every}]\n", "upstreams[0].classifier: \"every\" is not"},
		"redact category":         {"version: 1\nupstreams: [{name: a, builtin: demo, redact: [names]}]\n", "redact"},
		"empty tool":              {"version: 1\ntools: [{name: a__b}]\n", "needs classification, labels"},
		"unknown role":            {"version: 1\ntools: [{name: a__b, arguments: {to: sender}}]\n", "tools[0].arguments.to: role \"sender\""},
		"bad field path":          {"version: 1\ntools: [{name: a__b, classification: [read_only], trusted_fields: [a..b]}]\n", "trusted_fields[0]: path"},
		"external over http":      {"version: 1\nauth: {external: [{issuer: \"http://idp.example.com\", audience: x}]}\n", "auth.external[0].issuer"},
		"external no audience":    {"version: 1\nauth: {external: [{issuer: \"https://idp.example.com\"}]}\n", "auth.external[0].audience: required"},
		"external symmetric alg":  {"version: 1\nauth: {external: [{issuer: \"https://idp.example.com\", audience: x, algorithms: [HS256]}]}\n", "\"HS256\" is not one of"},
		"external unknown agent":  {"version: 1\nauth: {external: [{issuer: \"https://idp.example.com\", audience: x, agents: {app: ghost}}]}\n", "\"ghost\" is not a configured agent"},
		"fields of a writer":      {"version: 1\ntools: [{name: a__b, classification: [writes], trusted_fields: [id]}]\n", "only for a tool classified [read_only]"},
		"screening category":      {"version: 1\nscreening: {rules: [{category: malware, action: flag}]}\n", "screening.rules[0]: category"},
		"screening redact args":   {"version: 1\nscreening: {rules: [{category: secret, direction: arguments, action: redact}]}\n", "results only"},
		"screening upstream":      {"version: 1\nscreening: {rules: [{category: secret, upstreams: [nope], action: flag}]}\n", "not a configured upstream"},
		"screening pii type":      {"version: 1\nscreening: {rules: [{category: personal_data, types: [names], action: flag}]}\n", "personal-data type"},
		"screening label":         {"version: 1\nscreening: {rules: [{category: prompt_injection, action: label}]}\n", "needs labels"},
		"screening unknown":       {"version: 1\nscreening: {rules: [{category: secret, action: flag, severity: high}]}\n", "unknown field"},
		"screening classifier":    {"version: 1\nscreening: {classifier: all}\n", "screening.classifier"},
		"same prefix":             {"version: 1\nupstreams: [{name: a, builtin: demo, namespace: x_}, {name: b, builtin: demo, namespace: x_}]\n", "both serve names with prefix"},
		"prefix begins prefix":    {"version: 1\nupstreams: [{name: a, builtin: demo, namespace: gh_}, {name: b, builtin: demo, namespace: gh_x_}]\n", "begins prefix"},
		"misspelt none":           {"version: 1\nupstreams: [{name: a, builtin: demo, namespace: nonee}]\n", `a custom prefix ends in _, ., - or / (did you mean "none"?)`},
		"tool of no upstream":     {"version: 1\nupstreams: [{name: a, builtin: demo}]\ntools: [{name: nosuch__x, classification: [read_only]}]\n", `names upstream "nosuch", which is not configured`},
		"custom meets default":    {"version: 1\nupstreams: [{name: a, builtin: demo}, {name: b, builtin: demo, namespace: a__t}]\n", "begins prefix"},
		"bad namespace":           {"version: 1\nupstreams: [{name: a, builtin: demo, namespace: 'x y'}]\n", "namespace"},
		"bad isolation":           {"version: 1\nupstreams: [{name: a, builtin: demo, isolation: team}]\n", "isolation"},
		"queue bound":             {"version: 1\nupstreams: [{name: a, builtin: demo, max_queued_calls: -2}]\n", "max_queued_calls"},
		"queue timeout":           {"version: 1\nupstreams: [{name: a, builtin: demo, queue_timeout: -1s}]\n", "is negative"},
		"global queue bound":      {"version: 1\nlimits: {max_queued_calls_per_upstream: -5}\n", "max_queued_calls_per_upstream"},
		"global queue timeout":    {"version: 1\nlimits: {queue_timeout: -1s}\n", "is negative"},
		"spares":                  {"version: 1\nupstreams: [{name: a, stdio: {command: x}, spares: 99}]\n", "spares"},
		"audit sync":              {"version: 1\naudit: {sync: never}\n", "audit.sync"},
		"as no users":             {"version: 1\nauth: {authorization_server: {users: []}}\n", "at least one is required"},
		"as inline password":      {"version: 1\nauth: {authorization_server: {users: [{name: a, password: {value: x}}]}}\n", "looks like a secret"},
		"as unknown agent":        {"version: 1\nauth: {authorization_server: {users: [{name: a, password: {from_env: P}}], agents: [ghost]}}\n", "\"ghost\" is not a configured agent"},
		"as public http":          {"version: 1\nlisten: {public_url: 'http://gw.example.com'}\nauth: {authorization_server: {users: [{name: a, password: {from_env: P}}]}}\n", "must be https"},
		"as any interface":        {"version: 1\nlisten: {address: '0.0.0.0:8470'}\nauth: {authorization_server: {users: [{name: a, password: {from_env: P}}]}}\n", "not on loopback"},
		"as port zero":            {"version: 1\nlisten: {address: '127.0.0.1:0'}\nauth: {authorization_server: {users: [{name: a, password: {from_env: P}}]}}\n", "fixed port"},
		"as federation http":      {"version: 1\nauth: {authorization_server: {agents: [], federation: {issuer: 'http://idp.example.com', client_id: c}}}\n", "federation.issuer"},
		"as federation no id":     {"version: 1\nauth: {authorization_server: {federation: {issuer: 'https://idp.example.com'}}}\n", "federation.client_id: required"},
		"as long access":          {"version: 1\nauth: {max_ttl: 1h, authorization_server: {users: [{name: a, password: {from_env: P}}], access_token_ttl: 2h}}\n", "not over auth.max_ttl"},
		"oauth secret no issuer":  {"version: 1\nupstreams: [{name: a, http: {url: 'https://x', oauth: {client_id: c, client_secret: {from_env: S}}}}]\n", "issuer: required with client_secret"},
		"oauth plain http":        {"version: 1\nupstreams: [{name: a, http: {url: 'http://x.example.com/mcp', oauth: {}}}]\n", "must be https"},
		"tls key alone":           {"version: 1\nlisten: {tls: {enabled: true, key_file: k.pem}}\n", "cert_file and key_file go together"},
		"tls files disabled":      {"version: 1\nlisten: {tls: {cert_file: c.pem, key_file: k.pem}}\n", "cert_file and key_file go together"},
		"baseline both":           {"version: 1\nagents: [{name: a}]\ndetection: {baselines: [{agent: a, role: r}]}\n", "give agent or role, not both"},
		"baseline ghost":          {"version: 1\ndetection: {baselines: [{agent: ghost}]}\n", "is not a configured agent"},
		"baseline hours":          {"version: 1\ndetection: {baselines: [{role: r, active_hours: '9-17'}]}\n", "is not HH:MM-HH:MM"},
		"baseline timezone":       {"version: 1\ndetection: {baselines: [{role: r, timezone: Mars/Olympus}]}\n", "timezone"},
		"response action":         {"version: 1\ndetection: {response: [{action: nuke}]}\n", "is not one of"},
		"response class":          {"version: 1\ndetection: {response: [{alerts: [weird], action: flag}]}\n", "alerts: \"weird\""},
		"oauth and header":        {"version: 1\nupstreams: [{name: a, http: {url: 'https://x', oauth: {}, headers: {authorization: {from_env: T}}}}]\n", "must not also set Authorization"},
		"oauth grant":             {"version: 1\nupstreams: [{name: a, http: {url: 'https://x', oauth: {grant: password}}}]\n", "grant: \"password\""},
		"oauth cc no secret":      {"version: 1\nupstreams: [{name: a, http: {url: 'https://x', oauth: {grant: client_credentials, client_id: c}}}]\n", "needs client_id and client_secret"},
		"oauth cc per user":       {"version: 1\nupstreams: [{name: a, http: {url: 'https://x', oauth: {grant: client_credentials, client_id: c, client_secret: {from_env: S}, per_user: true}}}]\n", "authorization_code only"},
		"oauth inline secret":     {"version: 1\nupstreams: [{name: a, http: {url: 'https://x', oauth: {client_id: c, client_secret: {value: s}}}}]\n", "looks like a secret"},
		"oauth metadata url":      {"version: 1\nupstreams: [{name: a, http: {url: 'https://x', oauth: {client_metadata_url: 'http://x/c.json'}}}]\n", "client_metadata_url"},
		"oauth scope":             {"version: 1\nupstreams: [{name: a, http: {url: 'https://x', oauth: {scopes: ['a b']}}}]\n", "not a scope token"},
		"oauth per user shared":   {"version: 1\nupstreams: [{name: a, isolation: agent, http: {url: 'https://x', oauth: {per_user: true}}}]\n", "per_user needs isolation user or session"},
		"sync window":             {"version: 1\naudit: {sync_window: 1s}\n", "audit.sync_window"},
		"sync mode":               {"version: 1\naudit: {sync: later}\n", "is not before_answer, before_relay or background"},
		"background on postgres":  {"version: 1\nstore: {postgres: {from_env: PG}}\naudit: {sync: background}\n", "background is for the local audit journal"},
	} {
		_, err := Parse([]byte(tc.yaml), ".")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want %q", name, err, tc.want)
		}
	}
}

func TestLabelsDistinguishUnsetFromEmpty(t *testing.T) {
	t.Parallel()
	c, err := Parse([]byte("version: 1\nupstreams: [{name: a, builtin: demo, labels: []}, {name: b, builtin: demo}]\ntools: [{name: a__t, labels: [confidential]}]\n"), ".")
	if err != nil {
		t.Fatal(err)
	}
	if c.Upstreams[0].Labels == nil || len(*c.Upstreams[0].Labels) != 0 || c.Upstreams[1].Labels != nil {
		t.Errorf("upstream labels: %v %v", c.Upstreams[0].Labels, c.Upstreams[1].Labels)
	}
	if c.Tools[0].Labels == nil || (*c.Tools[0].Labels)[0] != LabelConfidential {
		t.Errorf("tool labels: %v", c.Tools[0].Labels)
	}
}

func TestValueResolve(t *testing.T) {
	t.Setenv("PC_TEST_SECRET", "s3cret")
	v := Value{FromEnv: "PC_TEST_SECRET"}
	if s, err := v.Resolve(".", nil); err != nil || s != "s3cret" {
		t.Errorf("from_env: %q %v", s, err)
	}
	if _, err := (Value{FromEnv: "PC_TEST_UNSET_VARIABLE"}).Resolve(".", nil); err == nil {
		t.Error("unset variable resolved")
	}
}

// FuzzParse: no configuration text panics the parser.
func FuzzParse(f *testing.F) {
	f.Add([]byte("version: 1\nupstreams: [{name: a, builtin: demo}]\n"))
	f.Add([]byte("version: 1\nlimits: {call_timeout: 1s}\n"))
	f.Add([]byte("{{{"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Parse(b, ".")
		if err == nil && c.Version != Version {
			t.Fatalf("accepted version %d", c.Version)
		}
	})
}

func TestScreeningRulesOrder(t *testing.T) {
	t.Parallel()
	c, err := Parse([]byte("version: 1\nupstreams: [{name: a, builtin: demo, redact: [email]}]\n"), ".")
	if err != nil {
		t.Fatal(err)
	}
	rules, defaults := c.ScreeningRules()
	if len(rules) != 1 || rules[0].Upstreams[0] != "a" || rules[0].Action != "redact" || !defaults {
		t.Errorf("the upstream's redact rule, then the defaults: %+v %v", rules, defaults)
	}
	c, err = Parse([]byte("version: 1\nscreening: {rules: []}\n"), ".")
	if rules, defaults := c.ScreeningRules(); err != nil || len(rules) != 0 || defaults {
		t.Errorf("explicit empty rules: %v %+v %v", err, rules, defaults)
	}
	for _, v := range []string{ClassifierGated, ClassifierEvery} {
		if c, err = Parse([]byte("version: 1\nscreening: {classifier: "+v+"}\n"), "."); err != nil || c.Screening.Classifier != v {
			t.Errorf("classifier %s: %v", v, err)
		}
		if c, err = Parse([]byte("version: 1\nupstreams: [{name: a, builtin: demo, classifier: "+v+"}]\n"), "."); err != nil || c.Upstreams[0].Classifier != v {
			t.Errorf("upstream classifier %s: %v", v, err)
		}
	}
}

// TestScreeningVocabulary: configuration accepts exactly the names the
// screening engine knows, and what it accepts the engine accepts.
func TestScreeningVocabulary(t *testing.T) {
	t.Parallel()
	pii := append([]string{screen.PIIEmail, screen.PIIPaymentCard, screen.PIIIBAN, screen.PIIUSSSN, screen.PIIPhone, screen.PIIIPAddress}, screen.NationalIDTypes...)
	if !slices.Equal(RedactCategories, pii) {
		t.Errorf("personal-data types: configuration %v, screening %v", RedactCategories, pii)
	}
	if !slices.Equal(ScreeningCategories, screen.Categories) {
		t.Errorf("categories: configuration %v, screening %v", ScreeningCategories, screen.Categories)
	}
	if !slices.Equal(ScreeningDirections, []string{screen.DirArguments, screen.DirResult}) {
		t.Errorf("directions: %v", ScreeningDirections)
	}
	for _, cat := range append(ScreeningCategories, "malware") {
		for _, dir := range append(ScreeningDirections, "", "prompt") {
			for _, action := range append(ScreeningActions, "quarantine") {
				for _, labels := range [][]string{nil, {"untrusted_input"}} {
					r := ScreeningRule{Category: cat, Direction: dir, Action: action, Labels: labels}
					mine := len(r.validate("r", nil)) == 0
					sr := screen.Rule(r)
					if theirs := sr.Validate() == nil; mine != theirs {
						t.Errorf("%+v: configuration accepts %v, screening %v", r, mine, theirs)
					}
				}
			}
		}
	}
	for _, r := range screen.DefaultRules() {
		cr := ScreeningRule(r)
		if errs := cr.validate("default", nil); len(errs) > 0 {
			t.Errorf("a default rule configuration would refuse: %+v: %v", r, errs)
		}
	}
}

func TestNamespacesThatCannotCollideAreAccepted(t *testing.T) {
	t.Parallel()
	c, err := Parse([]byte("version: 1\nupstreams: [{name: a, builtin: demo}, {name: b, builtin: demo, namespace: none}, {name: c, builtin: demo, namespace: gh_}]\n"), ".")
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"a__", "", "gh_"} {
		if got := c.Upstreams[i].Prefix(); got != want {
			t.Errorf("%s: prefix %q, want %q", c.Upstreams[i].Name, got, want)
		}
	}
}

// TestErrorsSpeakYAML: decoding errors give line and column, the field's
// path, what was expected and, for a misspelt key, the closest known one;
// never Go type names.
func TestErrorsSpeakYAML(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"version: 1\nagnets: [{name: a}]\n":                                               `line 2, column 1: agnets: unknown field (did you mean "agents"?)`,
		"version: 1\nlimits:\n  max_batch: lots\n":                                        "line 3, column 3: limits.max_batch: want a whole number, got a string",
		"version: 1\nupstreams:\n  - name: a\n    http: {url: 'https://x', headrs: {}}\n": `line 4, column 30: upstreams[0].http.headrs: unknown field (did you mean "headers"?)`,
		"version: 1\nagents: {name: a}\n":                                                 "line 2, column 1: agents: want a list, got a mapping",
		"version: 1\nzzzzzz: 1\n":                                                         "line 2, column 1: zzzzzz: unknown field",
		"":                                                                                "the configuration is empty",
		"# only a comment\n":                                                              "the configuration is empty",
		// A syntax error says so, with its line (not "empty").
		"version: 1\nagents:\n  - name: a\n   roles: [x]\n": "not valid YAML: line 2: did not find expected '-' indicator",
		"version: 1\nagents: [{name: a}\n":                  "not valid YAML: line 1: did not find expected ',' or ']'",
		"version: 1\nagents:\n\t- name: a\n":                "not valid YAML: line 3",
		// A duration that does not parse, with where it is.
		"version: 1\nupstreams: [{name: a, builtin: demo, session_idle: 10 minutes}]\n": `line 2, column 38: upstreams[0].session_idle: "10 minutes" is not a duration`,
		// Where no kind of upstream is given, the path is the upstream's.
		"version: 1\nupstreams: [{name: a}]\n": "upstreams[0]: exactly one of stdio, http or builtin must be set",
		// The same key valid in one place and unknown in another: the
		// error points at the unknown one.
		"version: 1\nupstreams:\n  - name: a\n    http: {url: 'https://x'}\n  - name: b\n    stdio: {command: x, url: y}\n": "upstreams[1].stdio.url: unknown field",
	} {
		_, err := Parse([]byte(in), ".")
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v\nwant %q", in, err, want)
			continue
		}
		if strings.Contains(err.Error(), "Go struct") || strings.Contains(err.Error(), "json:") {
			t.Errorf("%q: speaks Go: %v", in, err)
		}
	}
	// YAML merge keys are YAML, not fields.
	if _, err := Parse([]byte("version: 1\nupstreams:\n  - name: a\n    http: &h {url: 'https://x'}\n  - name: b\n    http:\n      <<: *h\n"), "."); err != nil {
		t.Errorf("a merge key: %v", err)
	}
	// Every unknown key at once, in file order.
	if _, err := Parse([]byte("version: 1\npolcy: {}\nagents: []\nagnets: []\n"), "."); err == nil ||
		!strings.Contains(err.Error(), `line 2, column 1: polcy: unknown field (did you mean "policy"?)`+"\n"+`line 4, column 1: agnets: unknown field (did you mean "agents"?)`) {
		t.Errorf("two unknown keys: %v", err)
	}
	// A header name is free-form: an unknown key there is not reported at
	// the header, and unknown keys elsewhere still are.
	if _, err := Parse([]byte("version: 1\nupstreams: [{name: a, http: {url: 'https://x', headers: {agnets: {value: x}}}}]\nagnets: 1\n"), "."); err == nil || !strings.Contains(err.Error(), "line 3, column 1: agnets") {
		t.Errorf("a key named like a field inside a free-form map: %v", err)
	}
}

var updateSchema = flag.Bool("update", false, "rewrite docs/config.schema.json")

// TestJSONSchema: docs/config.schema.json is the schema generated from the
// Go types, and every example configuration validates against it.
func TestJSONSchema(t *testing.T) {
	t.Parallel()
	b, err := JSONSchema()
	if err != nil {
		t.Fatal(err)
	}
	b = append(b, '\n')
	const path = "../../docs/config.schema.json"
	if *updateSchema {
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if on, err := os.ReadFile(path); err != nil || !bytes.Equal(on, b) {
		t.Fatalf("%s is not the generated schema (go test ./internal/config -run TestJSONSchema -update): %v", path, err)
	}
	var s jsonschema.Schema
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	rs, err := s.Resolve(nil)
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob("../../examples/*.yaml")
	more, _ := filepath.Glob("../../examples/*/*.yaml")
	files = append(files, more...)
	if len(files) < 2 {
		t.Fatalf("examples: %v", files)
	}
	for _, f := range files {
		y, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		j, err := yaml.YAMLToJSON(y)
		if err != nil {
			t.Fatal(err)
		}
		var v any
		json.Unmarshal(j, &v)
		if err := rs.Validate(v); err != nil {
			t.Errorf("%s does not validate against the schema: %v", f, err)
		}
	}
	// And what the schema refuses, Parse refuses.
	for _, bad := range []string{`{"version":1,"agnets":[]}`, `{"version":2}`, `{"version":1,"limits":{"max_batch":"lots"}}`, `{"version":1,"limits":{"call_timeout":30}}`} {
		var v any
		json.Unmarshal([]byte(bad), &v)
		if rs.Validate(v) == nil {
			t.Errorf("the schema accepts %s", bad)
		}
		if _, err := Parse([]byte(bad), "."); err == nil {
			t.Errorf("Parse accepts %s", bad)
		}
	}
}

// TestParseHoursReadsDecimal: every hour and minute, 08 and 09 included
// (read as octal by fmt.Sscan: "08:05-09:05" was 00:05-00:05, an empty
// window, and a night role's calls were never off hours).
func TestParseHoursReadsDecimal(t *testing.T) {
	t.Parallel()
	for h := range 24 {
		for _, m := range []int{0, 8, 9, 59} {
			s := fmt.Sprintf("%02d:%02d-%02d:%02d", h, m, (h+1)%24, 59-m)
			from, to, err := ParseHours(s)
			if err != nil || from != h*60+m || to != (h+1)%24*60+59-m {
				t.Fatalf("ParseHours(%q) = %d, %d, %v", s, from, to, err)
			}
		}
	}
	for _, bad := range []string{"8:00-09:00", "24:00-01:00", "07:60-08:00", "07:00 - 08:00", ""} {
		if _, _, err := ParseHours(bad); err == nil {
			t.Errorf("ParseHours(%q) accepted", bad)
		}
	}
}

// TestAuditSyncModes: each durability mode parses as itself; none given is
// background with the local store and before_answer with PostgreSQL.
func TestAuditSyncModes(t *testing.T) {
	t.Parallel()
	for yaml, want := range map[string]struct {
		sync   string
		window time.Duration
	}{
		"version: 1\n": {SyncBackground, DefaultBackgroundSyncWindow},
		"version: 1\nstore: {postgres: {from_env: PG}}\n":              {SyncBeforeAnswer, DefaultSyncWindow},
		"version: 1\naudit: {sync: before_relay}\n":                    {SyncBeforeRelay, DefaultSyncWindow},
		"version: 1\naudit: {sync: background}\n":                      {SyncBackground, DefaultBackgroundSyncWindow},
		"version: 1\naudit: {sync: background, sync_window: 500us}\n":  {SyncBackground, 500 * time.Microsecond},
		"version: 1\naudit: {sync: before_answer, sync_window: 5ms}\n": {SyncBeforeAnswer, 5 * time.Millisecond},
	} {
		c, err := Parse([]byte(yaml), ".")
		if err != nil {
			t.Fatalf("%q: %v", yaml, err)
		}
		if c.Audit.Sync != want.sync || c.Audit.SyncWindow.D() != want.window {
			t.Errorf("%q: sync %q, window %v, want %q, %v", yaml, c.Audit.Sync, c.Audit.SyncWindow.D(), want.sync, want.window)
		}
	}
}
