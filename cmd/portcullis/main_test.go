package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/modelcontextprotocol/go-sdk/oauthex"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/gateway"
	"github.com/portcullis-dev/portcullis/internal/ops"
	"github.com/portcullis-dev/portcullis/internal/pgtest"
	"github.com/portcullis-dev/portcullis/internal/sandbox"
	"github.com/portcullis-dev/portcullis/internal/toolreg"
)

// The test binary doubles as the portcullis binary when re-executed with
// PORTCULLIS_TEST_MAIN=1, so CLI tests run the real command without a build.
func TestMain(m *testing.M) {
	sandbox.Main()
	if os.Getenv("PORTCULLIS_TEST_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	if os.Getenv(conformanceClientEnv) == "1" {
		os.Exit(conformanceClient())
	}
	code := m.Run()
	pgtest.Stop()
	os.Exit(code)
}

// portcullis runs the CLI in a subprocess and returns stdout, stderr and the
// error.
func portcullis(t *testing.T, env []string, args ...string) (string, string, error) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(append(os.Environ(), "PORTCULLIS_TEST_MAIN=1"), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err
}

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "p.cedar"), `permit (principal, action == Action::"call_tool", resource in Upstream::"x");`)
	good := filepath.Join(dir, "good.yaml")
	writeFile(t, good, "version: 1\npolicy: {paths: [p.cedar]}\nagents: [{name: a}]\n")
	out, _, err := portcullis(t, nil, "config", "validate", good)
	if err != nil || !strings.Contains(out, "valid") {
		t.Fatalf("valid config: %v %s", err, out)
	}
	for name, body := range map[string]string{
		"unknown field":  "version: 1\nlisten: {adress: x}\n",
		"wrong version":  "version: 2\n",
		"inline secret":  "version: 1\nupstreams: [{name: u, http: {url: 'https://x', headers: {Authorization: {value: 'Bearer abc'}}}}]\n",
		"bad policy":     "version: 1\npolicy: {paths: [bad.cedar]}\n",
		"underscore":     "version: 1\nupstreams: [{name: a_b, builtin: demo}]\n",
		"long token ttl": "version: 1\nauth: {max_ttl: 72h}\n",
		// A header whose name does not say "secret" still may carry one.
		"inline key under a plain name": "version: 1\nupstreams: [{name: u, http: {url: 'https://x', headers: {X-Api: {value: 'sk-live-4eC39HqLyjWDarjtT1zdp7dc'}}}}]\n",
		"inline token in an env":        "version: 1\nupstreams: [{name: u, stdio: {command: x, env: {STRIPE: {value: 'sk_live_4eC39HqLyjWDarjtT1zdp7dc'}}}}]\n",
	} {
		writeFile(t, filepath.Join(dir, "bad.cedar"), `permit (principal, action == Action::"no_such_action", resource);`)
		p := filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+".yaml")
		writeFile(t, p, body)
		_, stderr, err := portcullis(t, nil, "config", "validate", p)
		if err == nil || !strings.HasPrefix(stderr, "portcullis: ") {
			t.Errorf("%s: accepted (stderr %q)", name, stderr)
		}
		if strings.Contains(stderr, "4eC39HqLyjWDarjtT1zdp7dc") {
			t.Errorf("%s: the error repeats the secret: %s", name, stderr)
		}
	}
}

// TestConfigValidateReportsEverything: a missing directory, a command not
// on PATH and a missing policy file are all reported, under the file's
// name, in one run.
func TestConfigValidateReportsEverything(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	writeFile(t, cfg, "version: 1\npolicy: {paths: [nope.cedar]}\nupstreams: [{name: a, stdio: {command: no-such-command-here, dir: /no/such/dir}}]\n")
	_, stderr, err := portcullis(t, nil, "config", "validate", cfg)
	for _, want := range []string{cfg + ": upstreams[0].stdio.dir: stat /no/such/dir", `upstreams[0].stdio.command: exec: "no-such-command-here"`, "nope.cedar: no such file"} {
		if err == nil || !strings.Contains(stderr, want) {
			t.Errorf("%v: %s lacks %s", err, stderr, want)
		}
	}
}

func TestExampleConfigsLoad(t *testing.T) {
	t.Parallel()
	files, _ := filepath.Glob("../../examples/*.yaml")
	more, _ := filepath.Glob("../../examples/*/*.yaml")
	files = append(files, more...)
	if len(files) == 0 {
		t.Fatal("no example configurations")
	}
	for _, f := range files {
		if out, stderr, err := portcullis(t, []string{"GITHUB_TOKEN=x"}, "config", "validate", "--form-only", f); err != nil {
			t.Errorf("%s: %v %s %s", f, err, out, stderr)
		}
	}
	// Where it would run, full.yaml names files this checkout lacks: a
	// validation that says "valid" would be a lie.
	_, stderr, err := portcullis(t, nil, "config", "validate", "../../examples/full.yaml")
	if err == nil || !strings.Contains(stderr, "audit.export[1].syslog.ca_file: stat /etc/portcullis/siem-ca.pem") {
		t.Errorf("full.yaml with its files missing: %v %s", err, stderr)
	}
}

// TestConfigValidateChecksSecrets: a from_secret the store does not hold
// fails validation, with the command that fixes it; once set, it passes.
func TestConfigValidateChecksSecrets(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	writeFile(t, cfg, "version: 1\ndata_dir: data\nupstreams: [{name: u, http: {url: 'https://x', headers: {Authorization: {from_secret: saas}}}}]\n")
	_, stderr, err := portcullis(t, nil, "config", "validate", cfg)
	if err == nil || !strings.Contains(stderr, `upstreams[0].http.headers.Authorization.from_secret: no secret "saas"`) || !strings.Contains(stderr, "portcullis secret set saas") {
		t.Fatalf("missing secret: %v %s", err, stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "data")); err == nil {
		t.Error("validate created a data directory")
	}
	cmd := exec.Command(os.Args[0], "secret", "set", "saas", "--config", cfg)
	cmd.Env = append(os.Environ(), "PORTCULLIS_TEST_MAIN=1")
	cmd.Stdin = strings.NewReader("Bearer x\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("secret set: %v %s", err, out)
	}
	if out, stderr, err := portcullis(t, nil, "config", "validate", cfg); err != nil {
		t.Fatalf("with the secret set: %v %s %s", err, out, stderr)
	}
}

func TestTokenIssueRequiresADeclaredAgentAndABoundedTTL(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	writeFile(t, cfg, "version: 1\nagents: [{name: bot}]\n")
	out, _, err := portcullis(t, nil, "token", "issue", "--config", cfg, "--agent", "bot", "--ttl", "5m")
	if err != nil || strings.Count(strings.TrimSpace(out), ".") != 2 {
		t.Fatalf("issue: %v %q", err, out)
	}
	if _, stderr, err := portcullis(t, nil, "token", "issue", "--config", cfg, "--agent", "intruder"); err == nil || !strings.Contains(stderr, "not configured") {
		t.Errorf("token for an undeclared agent: %v %s", err, stderr)
	}
	if _, stderr, err := portcullis(t, nil, "token", "issue", "--config", cfg, "--agent", "bot", "--ttl", "48h"); err == nil || !strings.Contains(stderr, "ttl") {
		t.Errorf("token beyond max_ttl: %v %s", err, stderr)
	}
	out, _, err = portcullis(t, nil, "audit", "tail", "--config", cfg, "--json")
	if err != nil || !strings.Contains(out, `"type":"token_issued"`) || !strings.Contains(out, `"agent":"bot"`) {
		t.Errorf("issuance not audited: %v %s", err, out)
	}
}

func npmBin(t *testing.T, name string) string {
	t.Helper()
	p, _ := filepath.Abs(filepath.Join("../../.cache/npm/node_modules/.bin", name))
	if _, err := os.Stat(p); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("npm test peers missing: %v", err)
		}
		t.Skipf("npm test peers not installed: %v", err)
	}
	return p
}

// TestWrapEnforcesOnAStdioServer drives `portcullis wrap` the way Claude Code
// does: as a stdio MCP server command, here with the Go SDK's client.
func TestWrapEnforcesOnAStdioServer(t *testing.T) {
	t.Parallel()
	fsBin := npmBin(t, "mcp-server-filesystem")
	dir := t.TempDir()
	root := filepath.Join(dir, "files")
	writeFile(t, filepath.Join(root, "a.txt"), "alpha\n")
	os.MkdirAll(filepath.Join(root, "allowed"), 0o700)
	sandboxOwns(t, root) // the sandboxed server runs as its own user
	writeFile(t, filepath.Join(dir, "policy.cedar"), `
@id("read-only")
permit (principal == Agent::"coder", action == Action::"call_tool", resource)
when { resource.read_only_hint };

@id("write-only-allowed")
permit (principal == Agent::"coder", action == Action::"call_tool", resource == Tool::"local__write_file")
when { context.arguments has path && context.arguments.path like "*/allowed/*" };`)
	cfg := filepath.Join(dir, "wrap.yaml")
	writeFile(t, cfg, "version: 1\ndata_dir: data\npolicy: {paths: [policy.cedar]}\nagents: [{name: coder}]\n")
	tok, _, err := portcullis(t, nil, "token", "issue", "--config", cfg, "--agent", "coder")
	if err != nil {
		t.Fatal(err)
	}
	tokFile := filepath.Join(dir, "token")
	writeFile(t, tokFile, tok)

	connect := func(tokenFile string) (*mcp.ClientSession, error) {
		cmd := exec.Command(os.Args[0], "wrap", "--config", cfg, "--token-file", tokenFile, "--read-write", root, "--", fsBin, root)
		cmd.Env = append(os.Environ(), "PORTCULLIS_TEST_MAIN=1")
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		s, err := mcp.NewClient(&mcp.Implementation{Name: "claude-code-like"}, nil).Connect(ctx, &mcp.CommandTransport{Command: cmd}, nil)
		if err == nil {
			t.Cleanup(func() { s.Close() })
		}
		return s, err
	}
	s, err := connect(tokFile)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	res, err := s.ListTools(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tl := range res.Tools {
		names = append(names, tl.Name)
	}
	if !slices.Contains(names, "read_text_file") || !slices.Contains(names, "write_file") || slices.Contains(names, "move_file") {
		t.Fatalf("wrap lists %v: want read tools and write_file, unprefixed, without move_file", names)
	}
	got, err := s.CallTool(ctx, &mcp.CallToolParams{Name: "read_text_file", Arguments: map[string]any{"path": filepath.Join(root, "a.txt")}})
	if err != nil || len(got.Content) == 0 || got.Content[0].(*mcp.TextContent).Text != "alpha\n" {
		t.Fatalf("read through wrap: %v %+v", err, got)
	}
	_, err = s.CallTool(ctx, &mcp.CallToolParams{Name: "write_file", Arguments: map[string]any{"path": filepath.Join(root, "b.txt"), "content": "x"}})
	if err == nil || !strings.Contains(err.Error(), "no_permit") {
		t.Fatalf("write through wrap: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "b.txt")); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("denied write reached the server")
	}

	// A token's expiry is checked on every request of an open session,
	// also inside the verifier's clock-skew leeway.
	short, issued, err := portcullis(t, nil, "token", "issue", "--config", cfg, "--agent", "coder", "--ttl", "20s", "-v") // room for a slow start of the sandboxed server on a loaded machine
	if err != nil {
		t.Fatal(err)
	}
	_, at, _ := strings.Cut(strings.TrimSpace(issued), "expires ")
	expires, err := time.Parse(time.RFC3339, at)
	if err != nil {
		t.Fatalf("expiry in %q: %v", issued, err)
	}
	writeFile(t, filepath.Join(dir, "short-token"), short)
	brief, err := connect(filepath.Join(dir, "short-token"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := brief.CallTool(ctx, &mcp.CallToolParams{Name: "read_text_file", Arguments: map[string]any{"path": filepath.Join(root, "a.txt")}}); err != nil {
		t.Fatalf("before expiry: %v", err)
	}
	time.Sleep(time.Until(expires) + 1500*time.Millisecond) // past expiry, inside the 30 s leeway
	if _, err := brief.CallTool(ctx, &mcp.CallToolParams{Name: "read_text_file", Arguments: map[string]any{"path": filepath.Join(root, "a.txt")}}); err == nil ||
		!(strings.Contains(err.Error(), "credential_expired") || strings.Contains(err.Error(), "unauthenticated")) {
		t.Errorf("a call after the token expired: %v", err)
	}

	// Without a valid token every request is refused.
	writeFile(t, filepath.Join(dir, "bad-token"), "not-a-token")
	bad, err := connect(filepath.Join(dir, "bad-token"))
	if err == nil {
		if _, err := bad.ListTools(ctx, nil); err == nil || !strings.Contains(err.Error(), "unauthenticated") {
			t.Errorf("wrap served a client without a valid token: %v", err)
		}
	}
	out, _, err := portcullis(t, nil, "audit", "tail", "--config", cfg, "-n", "100")
	if err != nil || !strings.Contains(out, "write_file") || !strings.Contains(out, "authn") {
		t.Errorf("audit tail after wrap: %v\n%s", err, out)
	}
}

// TestServeDevNeedsNothingElse runs the README's first command and connects
// with what it prints.
func TestServeDevNeedsNothingElse(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "serve", "--dev", "--data-dir", filepath.Join(dir, "data"), "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), "PORTCULLIS_TEST_MAIN=1")
	stdout, _ := cmd.StdoutPipe()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	var endpoint, token string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() && (endpoint == "" || token == "") {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) >= 3 && f[0] == "MCP" && f[1] == "endpoint":
			endpoint = f[2]
		case len(f) == 3 && f[0] == "Authorization:":
			token = f[2]
		}
	}
	if endpoint == "" || token == "" {
		t.Fatalf("banner lacks endpoint or token; stderr:\n%s", stderr.String())
	}
	httpc := &http.Client{Transport: roundTripper(func(r *http.Request) (*http.Response, error) {
		r = r.Clone(r.Context())
		r.Header.Set("Authorization", "Bearer "+token)
		return http.DefaultTransport.RoundTrip(r)
	})}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := mcp.NewClient(&mcp.Implementation{Name: "newcomer"}, nil).Connect(ctx, &mcp.StreamableClientTransport{Endpoint: endpoint, HTTPClient: httpc}, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.CallTool(ctx, &mcp.CallToolParams{Name: "demo__search_files", Arguments: map[string]any{"query": "threat model"}})
	if err != nil || res.IsError {
		t.Fatalf("demo search: %v %+v", err, res)
	}
	s.Close()
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("graceful stop: %v\n%s", err, stderr.String())
	}
	out, _, err := portcullis(t, nil, "audit", "tail", "--dev", "--data-dir", filepath.Join(dir, "data"), "-n", "50")
	if err != nil || !strings.Contains(out, "demo__search_files") || !strings.Contains(out, "stopped") {
		t.Errorf("audit after dev run: %v\n%s", err, out)
	}
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestChangesAreAttributedWithoutBy: with no --by and no $USER, a revocation
// is recorded as done by the signed-in account, never by nobody.
func TestChangesAreAttributedWithoutBy(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	writeFile(t, cfg, "version: 1\ndata_dir: data\nagents: [{name: a}]\n")
	if _, stderr, err := portcullis(t, []string{"USER="}, "agent", "revoke", "a", "--config", cfg, "--reason", "left"); err != nil {
		t.Fatalf("revoke: %v %s", err, stderr)
	}
	out, _, err := portcullis(t, nil, "audit", "tail", "--config", cfg, "--json")
	if err != nil {
		t.Fatal(err)
	}
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, `"detail":"by `+u.Username+`: left"`) {
		t.Errorf("revocation not attributed to %s:\n%s", u.Username, out)
	}
}

// TestTokenIssueOut: --out writes the token for its owner only, creating
// the directory, and replaces an older token whole.
func TestTokenIssueOut(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	writeFile(t, cfg, "version: 1\ndata_dir: data\nagents: [{name: a}]\n")
	out := filepath.Join(dir, "home", ".config", "portcullis", "a.token")
	for range 2 {
		if stdout, stderr, err := portcullis(t, nil, "token", "issue", "--config", cfg, "--agent", "a", "--out", out); err != nil || stdout != "" {
			t.Fatalf("issue: %v %q %s", err, stdout, stderr)
		}
	}
	st, err := os.Stat(out)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v %v", st, err)
	}
	if d, err := os.Stat(filepath.Dir(out)); err != nil || d.Mode().Perm() != 0o700 {
		t.Fatalf("token directory: %v %v", d, err)
	}
	b, _ := os.ReadFile(out)
	if strings.Count(string(b), ".") != 2 || strings.Count(string(b), "\n") != 1 {
		t.Errorf("token file holds %q", b)
	}
	if entries, _ := os.ReadDir(filepath.Dir(out)); len(entries) != 1 {
		t.Errorf("left behind: %v", entries)
	}
}

// TestTaskKeygenAndJKT: task keygen writes a key for its owner and prints
// the thumbprint that task jkt computes from the file, and that a task
// started with it is bound to.
func TestTaskKeygenAndJKT(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key := filepath.Join(dir, "agent", "dpop.key")
	out, stderr, err := portcullis(t, nil, "task", "keygen", "--out", key)
	if err != nil {
		t.Fatalf("keygen: %v %s", err, stderr)
	}
	jkt := strings.TrimSpace(out)
	if st, err := os.Stat(key); err != nil || st.Mode().Perm() != 0o600 || len(jkt) != 43 {
		t.Fatalf("key %v %v, jkt %q", st, err, jkt)
	}
	if again, _, err := portcullis(t, nil, "task", "jkt", key); err != nil || strings.TrimSpace(again) != jkt {
		t.Errorf("jkt of the key file: %q %v, want %q", again, err, jkt)
	}
	if _, _, err := portcullis(t, nil, "task", "keygen", "--out", key); err == nil {
		t.Error("keygen overwrote a key")
	}
	cfg := filepath.Join(dir, "c.yaml")
	writeFile(t, cfg, "version: 1\ndata_dir: data\nagents: [{name: a}]\n")
	started, stderr, err := portcullis(t, nil, "task", "start", "--config", cfg, "--agent", "a", "--user", "alice", "--tools", "u__t", "--budget", "3", "--jkt", jkt)
	if err != nil {
		t.Fatalf("task start: %v %s", err, stderr)
	}
	var res struct {
		Token  string
		TaskID string `json:"task_id"`
	}
	json.Unmarshal([]byte(started), &res)
	// The task's events are found by its ID.
	if out, stderr, err := portcullis(t, nil, "audit", "trace", res.TaskID, "--config", cfg); err != nil || !strings.Contains(out, "task_started") {
		t.Errorf("audit trace of task %s: %v\n%s%s", res.TaskID, err, out, stderr)
	}
	parts := strings.Split(res.Token, ".")
	if len(parts) != 3 {
		t.Fatalf("token %q", res.Token)
	}
	claims, _ := base64.RawURLEncoding.DecodeString(parts[1])
	if !strings.Contains(string(claims), `"jkt":"`+jkt+`"`) {
		t.Errorf("the task token is not bound to the key: %s", claims)
	}
}

// TestFlagUsageHasNoStrayTypeNames: pflag turns `quoted` text in a flag's
// usage into its type name ("--key portcullis policy keygen"); no flag of
// any command may do that.
func TestFlagUsageHasNoStrayTypeNames(t *testing.T) {
	t.Parallel()
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		c.Flags().VisitAll(func(f *pflag.Flag) {
			if strings.Contains(f.Usage, "`") {
				t.Errorf("%s --%s: usage %q", c.CommandPath(), f.Name, f.Usage)
			}
		})
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(rootCmd())
}

// TestToolsApproveAll: --all approves an upstream's quarantined
// definitions except those with findings, which it names.
func TestToolsApproveAll(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "c.yaml")
	writeFile(t, cfgPath, "version: 1\ndata_dir: data\npinning: strict\nupstreams: [{name: u, builtin: demo}]\n")
	withData(t, cfgPath, func(ctx context.Context, o *ops.Ops) {
		for name, why := range map[string]string{"read": "new tool", "list": "new tool", "send": "new tool; findings: urgency_tag in the description"} {
			p := toolreg.Pin{Upstream: "u", Name: name, Digest: "sha256:" + name, Definition: []byte(`{"name":"` + name + `"}`), State: toolreg.Quarantined, Reason: why, SeenAt: time.Now()}
			if err := o.Store().AddPin(ctx, p); err != nil {
				t.Fatal(err)
			}
		}
	})
	out, stderr, err := portcullis(t, nil, "tools", "approve", "u", "--all", "--config", cfgPath, "--by", "alice")
	if err != nil || !strings.Contains(out, "u/read sha256:read approved") || !strings.Contains(out, "u/list sha256:list approved") || strings.Contains(out, "u/send") || !strings.Contains(stderr, "left out u/send") {
		t.Fatalf("approve --all: %v\n%s%s", err, out, stderr)
	}
	if _, _, err := portcullis(t, nil, "tools", "approve", "u", "--config", cfgPath); err == nil {
		t.Error("approve without a tool or --all")
	}
}

// withData opens the data directory of the configuration at cfgPath, as a
// command would, hands it to f (to seed it) and closes it.
func withData(t *testing.T, cfgPath string, f func(ctx context.Context, o *ops.Ops)) {
	t.Helper()
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	o, err := ops.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	f(context.Background(), o)
}

// devServe runs `serve --dev` on a fixed free port (the built-in
// authorization server's issuer) and returns its MCP endpoint, the sign-in
// its banner prints, and its stderr.
func devServe(t *testing.T) (endpoint, user, password string, stderr *bytes.Buffer) {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "serve", "--dev", "--data-dir", filepath.Join(dir, "data"), "--listen", freeAddr(t), "--admin-listen", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), "PORTCULLIS_TEST_MAIN=1")
	stdout, _ := cmd.StdoutPipe()
	stderr = &bytes.Buffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() })
	sc := bufio.NewScanner(stdout)
	for sc.Scan() && (endpoint == "" || password == "") {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) >= 3 && f[0] == "MCP" && f[1] == "endpoint":
			endpoint = f[2]
		case len(f) >= 4 && f[0] == "user" && f[2] == "password":
			user, password = strings.TrimSuffix(f[1], ","), f[3]
		}
	}
	go io.Copy(io.Discard, stdout)
	if endpoint == "" || password == "" {
		t.Fatalf("banner lacks the endpoint or the sign-in; stderr:\n%s", stderr.String())
	}
	return endpoint, user, password, stderr
}

// TestServeDevOAuthWithTypeScriptClient: an MCP client that speaks OAuth
// (the TypeScript SDK's OAuthClientProvider, as Claude Code uses) connects
// to `serve --dev` with no header: discovery from the 401, dynamic
// registration, authorization code with PKCE through the sign-in page
// (user and password from the banner), the tools, and a refresh when its
// access token is refused.
func TestServeDevOAuthWithTypeScriptClient(t *testing.T) {
	t.Parallel()
	script, _ := filepath.Abs("../../.cache/npm/oauth-client.mjs")
	if _, err := os.Stat(script); err != nil {
		t.Fatalf("%s missing: run ./scripts/install-test-deps.sh", script)
	}
	endpoint, user, password, stderr := devServe(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "node", script, endpoint, user, password, gateway.DevAgent).CombinedOutput()
	if err != nil {
		t.Fatalf("TypeScript OAuth client: %v\n%s\ngateway:\n%s", err, out, stderr.String())
	}
	got := string(out)
	t.Logf("TypeScript OAuth client:\n%s", got)
	for _, want := range []string{`"registered":"pc-`, `"authorize":"http://`, `"demo__search_files"`, `{"tokens":2,"refresh":true}`, `{"called":true,"saved":2}`} {
		if !strings.Contains(got, want) {
			t.Errorf("client output lacks %s:\n%s", want, got)
		}
	}
}

// TestServeDevConsentInARealBrowser: the sign-in and consent page of
// `serve --dev` in a real browser (Debian's Chromium, driven by
// Playwright): a person signs in, chooses the agent and allows; the
// browser lands on the client's redirect URI with the code (under the
// page's real Content-Security-Policy), and the client (the Go SDK's
// OAuth handler) gets its token and lists the tools.
func TestServeDevConsentInARealBrowser(t *testing.T) {
	t.Parallel()
	script, _ := filepath.Abs("../../.cache/npm/consent-browser.mjs")
	for _, p := range []string{script, "/usr/bin/chromium"} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s missing: run ./scripts/install-test-deps.sh", p)
		}
	}
	endpoint, user, password, stderr := devServe(t)
	// The client's redirect URI: where the browser lands with the code.
	landed := make(chan url.Values, 1)
	cb := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case landed <- r.URL.Query():
		default:
		}
		io.WriteString(w, "you can close this window")
	}))
	defer cb.Close()
	redirect := cb.URL + "/callback"
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	handler, err := auth.NewAuthorizationCodeHandler(&auth.AuthorizationCodeHandlerConfig{
		RedirectURL: redirect,
		DynamicClientRegistrationConfig: &auth.DynamicClientRegistrationConfig{Metadata: &oauthex.ClientRegistrationMetadata{
			RedirectURIs: []string{redirect}, ClientName: "browser-e2e", TokenEndpointAuthMethod: "none"}},
		AuthorizationCodeFetcher: func(ctx context.Context, args *auth.AuthorizationArgs) (*auth.AuthorizationResult, error) {
			out, err := exec.CommandContext(ctx, "node", script, args.URL, user, password, gateway.DevAgent).CombinedOutput()
			t.Logf("browser: %s", out)
			if err != nil {
				return nil, fmt.Errorf("browser: %v: %s", err, out)
			}
			if strings.Contains(string(out), `"blocked":["`) {
				t.Errorf("the browser refused something: %s", out)
			}
			select {
			case q := <-landed:
				return &auth.AuthorizationResult{Code: q.Get("code"), State: q.Get("state"), Iss: q.Get("iss")}, nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	s, err := mcp.NewClient(&mcp.Implementation{Name: "browser-e2e", Version: "1"}, nil).Connect(ctx,
		&mcp.StreamableClientTransport{Endpoint: endpoint, OAuthHandler: handler, MaxRetries: -1}, nil)
	if err != nil {
		t.Fatalf("connect after consent in the browser: %v\ngateway:\n%s", err, stderr.String())
	}
	defer s.Close()
	res, err := s.ListTools(ctx, nil)
	if err != nil || len(res.Tools) == 0 {
		t.Fatalf("tools after consent: %v %v", res, err)
	}
}

// TestSimulate: `portcullis simulate` runs its scripted misbehaviours and
// normal traffic through a real gateway: every misbehaviour is detected
// (and contained where its playbook says), normal traffic raises nothing.
func TestSimulate(t *testing.T) {
	t.Parallel()
	out, errOut, err := portcullis(t, nil, "simulate")
	if err != nil {
		t.Fatalf("simulate: %v\n%s\n%s", err, out, errOut)
	}
	t.Log("\n" + out)
	for _, want := range []string{"normal work ", "tool enumeration ", "burst of calls ", "bulk read, then external send ", "off-hours use ",
		"credential hunting ", "lateral movement by delegation ", "slow drift over simulated days "} {
		line := ""
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, want) {
				line = l
			}
		}
		if f := strings.Fields(strings.TrimPrefix(line, want)); len(f) == 0 || f[0] != "ok" {
			t.Errorf("%q: %q", want, line)
		}
	}
}

// sandboxOwns gives dir to the user sandboxed servers run as (when the
// tests run as root), and lets it through dir's ancestors.
func sandboxOwns(t *testing.T, dir string) {
	t.Helper()
	if os.Getuid() != 0 {
		return
	}
	filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err == nil {
			os.Lchown(p, sandbox.Unprivileged, sandbox.Unprivileged)
		}
		return nil
	})
	for p := filepath.Dir(dir); len(p) > len(os.TempDir()); p = filepath.Dir(p) {
		os.Chmod(p, 0o711)
	}
}

// TestSandboxShow prints the sandbox an upstream gets, its way out
// included.
func TestSandboxShow(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "c.yaml")
	writeFile(t, cfgPath, `version: 1
data_dir: data
upstreams:
  - {name: closed, stdio: {command: /bin/cat}}
  - {name: web, stdio: {command: /bin/cat, sandbox: {egress: ["api.example.com:443", "10.0.0.0/8:5432"]}}}
`)
	out, _, err := portcullis(t, nil, "sandbox", "show", "web", "--config", cfgPath)
	if err != nil || !strings.Contains(out, "egress     api.example.com:443 10.0.0.0/8:5432") || !strings.Contains(out, "127.0.0.1:3128") {
		t.Fatalf("show web: %v\n%s", err, out)
	}
	out, _, err = portcullis(t, nil, "sandbox", "show", "closed", "--config", cfgPath)
	if err != nil || !strings.Contains(out, "egress     none") || !strings.Contains(out, "no network") {
		t.Fatalf("show closed: %v\n%s", err, out)
	}
}
