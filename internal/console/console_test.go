package console

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/ops"
	"github.com/portcullis-dev/portcullis/internal/policy"
	"github.com/portcullis-dev/portcullis/internal/reason"
	"github.com/portcullis-dev/portcullis/internal/store"
)

// newTestServer is a console over a fresh store, with one operator signed
// in: its session cookie and CSRF token.
func newTestServer(t testing.TB) (*Server, *http.Cookie, string) {
	t.Helper()
	dir := t.TempDir()
	cfg, err := config.Parse([]byte("version: 1\ndata_dir: data\nagents: [{name: bot}]\nadmins: [{name: olga, roles: [operator]}]\nupstreams: [{name: demo, builtin: demo}]\n"), dir)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(filepath.Join(dir, "c.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	set, _ := policy.Compile(nil)
	s, err := New(Options{Config: cfg, Store: st, Ops: ops.With(cfg, st, nil), Engine: policy.NewEngine(set)})
	if err != nil {
		t.Fatal(err)
	}
	token := "pcl_" + strings.Repeat("A", 52)
	if err := st.AddConsoleLink(context.Background(), token, "olga", time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("POST", "/console/login", strings.NewReader("token="+token))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	s.Handler().ServeHTTP(rec, req)
	var ck *http.Cookie
	for _, c := range rec.Result().Cookies() {
		ck = c
	}
	if ck == nil {
		t.Fatalf("no session: %d", rec.Code)
	}
	s.mu.Lock()
	csrf := s.sessions[ck.Value].CSRF
	s.mu.Unlock()
	return s, ck, csrf
}

// FuzzConsole: whatever a signed-in browser sends (any path, method and
// form, with a valid token), the console answers without crashing, never
// with a server error for a path or form it does not know.
func FuzzConsole(f *testing.F) {
	for _, seed := range []struct{ method, path, form string }{
		{"GET", "/console/audit", "agent=bot&type=decision&within=1h"},
		{"POST", "/console/approvals/x", "action=approve&scope=task"},
		{"POST", "/console/revoke", "kind=agent&value=bot"},
		{"GET", "/console/policy", "agent=bot&tool=demo__x&args=%7B"},
		{"GET", "/console/tools/%2e%2e/%2e%2e", ""},
		{"POST", "/console/alerts/..%2F", "action=ack"},
	} {
		f.Add(seed.method, seed.path, seed.form)
	}
	s, ck, csrf := newTestServer(f)
	h := s.Handler()
	f.Fuzz(func(t *testing.T, method, path, form string) {
		if method != "GET" && method != "POST" {
			method = "GET"
		}
		u, err := url.Parse(path)
		if err != nil || !strings.HasPrefix(u.Path, "/console/") {
			return
		}
		var req *http.Request
		if method == "POST" {
			req, err = http.NewRequest("POST", "http://console.test"+u.RequestURI(), strings.NewReader(form+"&csrf="+url.QueryEscape(csrf)))
			if err != nil {
				return
			}
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		} else {
			u.RawQuery = form
			if req, err = http.NewRequest("GET", "http://console.test"+u.RequestURI(), nil); err != nil {
				return
			}
		}
		req.AddCookie(ck)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s %s %q: %d %s", method, path, form, rec.Code, rec.Body.String())
		}
	})
}

// TestEventTypesComplete: the overview counts decisions as the events
// that are no other type, so it must know every type.
func TestEventTypesComplete(t *testing.T) {
	b, err := os.ReadFile("../audit/event.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`Type\s+= "([a-z_]+)"`).FindAllSubmatch(b, -1) {
		if !slices.Contains(eventTypes, audit.Type(m[1])) {
			t.Errorf("event type %s is not in eventTypes", m[1])
		}
	}
}

// TestIdPRoles: the provider's person is the admin whose identities
// include it (ASCII case only; never an admin's local name) with that
// admin's role, else, named idp:<user>, the strongest role its groups map
// to, else nobody; an email must be verified.
func TestIdPRoles(t *testing.T) {
	cfg, err := config.Parse([]byte(`version: 1
admins: [{name: alice, roles: [approver], identities: [alice@corp.example]}, {name: sam, roles: [admin]}]
console:
  sign_in:
    issuer: https://idp.corp.example
    client_id: portcullis
    redirect_url: http://localhost:8471/console/oidc/callback
    groups: {secops: operator, auditors: viewer}
`), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	ok := func(email string, groups ...any) map[string]any {
		return map[string]any{"email": email, "email_verified": true, "groups": groups}
	}
	for _, tc := range []struct {
		claims     map[string]any
		user, role string
		viaGroups  bool
	}{
		{ok("Alice@Corp.example"), "alice", "approver", false},
		{ok("bob@corp.example", "auditors", "secops"), "idp:bob@corp.example", "operator", true},
		{ok("carol@corp.example", "sales"), "carol@corp.example", "", false},
		{map[string]any{"email": "alice@corp.example", "email_verified": false}, "alice@corp.example", "", false}, // unverified
		{map[string]any{"email": "alice@corp.example"}, "alice@corp.example", "", false},                          // unverified
		{ok("sam"), "sam", "", false},                               // an admin's local name is no identity
		{ok("ſam", "secops"), "idp:ſam", "operator", true},          // no Unicode folding onto sam
		{ok("alİce@corp.example"), "alİce@corp.example", "", false}, // nor onto alice
		{map[string]any{"sub": "u-1"}, "", "", false},               // no email: no fallback to sub
	} {
		user, role, via, _ := s.idpRole(tc.claims)
		if user != tc.user || role != tc.role || via != tc.viaGroups {
			t.Errorf("%v: %q %q %v, want %q %q %v", tc.claims, user, role, via, tc.user, tc.role, tc.viaGroups)
		}
	}
	for _, bad := range []string{
		"console: {sign_in: {issuer: 'http://idp.example', client_id: c, redirect_url: 'http://localhost:1/console/oidc/callback'}}",
		"console: {sign_in: {issuer: 'https://idp.example', client_id: c, redirect_url: 'http://localhost:1/elsewhere'}}",
		"console: {sign_in: {issuer: 'https://idp.example', client_id: c, redirect_url: 'http://console.corp.example/console/oidc/callback'}}",
		"console: {sign_in: {issuer: 'https://idp.example', client_id: c, redirect_url: 'http://localhost:1/console/oidc/callback', groups: {g: root}}}",
	} {
		if _, err := config.Parse([]byte("version: 1\n"+bad+"\n"), t.TempDir()); err == nil {
			t.Errorf("accepted: %s", bad)
		}
	}
}

// TestDelegationTrees: a task's tree from its start and each exchange.
func TestDelegationTrees(t *testing.T) {
	started := func(task, agent string) *audit.Event {
		return audit.New(audit.TypeToken, audit.OutcomeInfo, reason.TaskStarted, time.Now(), audit.Subject{Task: task, Agent: agent, User: "alice"})
	}
	handed := func(task, from, to string, o audit.Outcome) *audit.Event {
		e := audit.New(audit.TypeToken, o, reason.TokenExchange, time.Now(), audit.Subject{Task: task, Agent: from, User: "alice"})
		e.Target = to
		return e
	}
	trees := delegationTrees([]*audit.Event{
		started("t1", "planner"),
		handed("t1", "planner", "researcher", audit.OutcomeAllow),
		handed("t1", "planner", "writer", audit.OutcomeAllow),
		handed("t1", "researcher", "fetcher", audit.OutcomeAllow),
		handed("t1", "writer", "mallory", audit.OutcomeDeny), // refused: no branch
		started("t2", "solo"),
		handed("t3", "x", "orphan", audit.OutcomeAllow), // its task started before the window
	})
	if len(trees) != 2 || trees[0].ID != "t2" || trees[1].ID != "t1" {
		t.Fatalf("trees %+v", trees)
	}
	root := trees[1].Root
	if root.Agent != "planner" || len(root.Children) != 2 || root.Children[0].Agent != "researcher" || len(root.Children[0].Children) != 1 || root.Children[0].Children[0].Agent != "fetcher" || len(root.Children[1].Children) != 0 {
		t.Fatalf("t1's tree: %+v", root)
	}
}
