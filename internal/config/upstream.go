package config

import (
	"fmt"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/portcullis-dev/portcullis/internal/egress"
)

// Tool is the operator's classification of a tool, which replaces the one
// derived from the upstream's (untrusted) annotations, and the data-flow
// labels its results give a session.
type Tool struct {
	// Name is the qualified tool name, "<upstream>__<tool>".
	Name           string   `json:"name"`
	Classification []string `json:"classification,omitempty"`
	// Labels replace the upstream's labels for this tool's results. An
	// empty list (labels: []) means its results label nothing.
	Labels *[]string `json:"labels,omitempty"`
	// Arguments give arguments their roles for argument provenance
	// (recipient, destination, amount, target, content, or none);
	// arguments not listed take the role their name suggests.
	Arguments map[string]string `json:"arguments,omitempty"`
	// TrustedFields name the fields of the tool's results that the system
	// writes (dotted key paths, lists walked through): their values are
	// trusted provenance whatever the upstream's label.
	TrustedFields []string `json:"trusted_fields,omitempty"`
}

// ArgumentRoles are the roles an argument can have for argument provenance
// (Cedar context.roles); RoleNone configures an argument to have none.
var ArgumentRoles = []string{"recipient", "destination", "amount", "target", "content"}

// RoleNone: the argument has no role.
const RoleNone = "none"

// validFieldPath checks a trusted_fields path: dotted keys ("*" for any),
// at most 16 of them and 256 bytes (internal/provenance.ParsePath reads it).
func validFieldPath(p string) error {
	if p == "$" {
		return nil // the whole result
	}
	if p == "" || len(p) > 256 {
		return fmt.Errorf("path %q must be 1 to 256 bytes", p)
	}
	segs := strings.Split(strings.TrimPrefix(p, "$."), ".")
	if len(segs) > 16 {
		return fmt.Errorf("path %q has more than 16 segments", p)
	}
	if slices.Contains(segs, "") {
		return fmt.Errorf("path %q has an empty segment", p)
	}
	return nil
}

// Well-known session labels. Any label matching labelRE may be used;
// these are the ones the gateway applies by default.
const (
	LabelUntrustedInput = "untrusted_input" // the session read content an attacker may control
	LabelConfidential   = "confidential"    // the session read sensitive data
)

// labelRE is the form of a session label.
var labelRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`)

func validLabels(field string, labels []string) []error {
	var errs []error
	for _, l := range labels {
		if !labelRE.MatchString(l) {
			errs = append(errs, fmt.Errorf("%s: label %q must match %s", field, l, labelRE))
		}
	}
	return errs
}

// ToolClasses are the classes a tool may have.
var ToolClasses = []string{"read_only", "writes", "deletes", "sends_externally", "moves_money"}

// Upstream is one MCP tool server behind the gateway. Exactly one of Stdio,
// HTTP and Builtin is set.
type Upstream struct {
	Name    string       `json:"name"`
	Stdio   *StdioServer `json:"stdio,omitempty"`
	HTTP    *HTTPServer  `json:"http,omitempty"`
	Builtin string       `json:"builtin,omitempty"`
	// CallTimeout bounds one call to this upstream; zero means the global limit.
	CallTimeout Duration `json:"call_timeout,omitempty"`
	// MaxConcurrentCalls bounds in-flight calls to this upstream.
	MaxConcurrentCalls int `json:"max_concurrent_calls,omitempty"`
	// MaxQueuedCalls bounds calls waiting for one of its slots (-1: none
	// wait); zero means the global limit.
	MaxQueuedCalls int `json:"max_queued_calls,omitempty"`
	// QueueTimeout is how long a call waits for a slot; zero means the
	// global limit.
	QueueTimeout Duration `json:"queue_timeout,omitempty"`
	// ProtocolVersion pins the MCP protocol version offered to this upstream
	// (default: the newest the gateway speaks; the server may negotiate down).
	ProtocolVersion string `json:"protocol_version,omitempty"`
	// Labels are the session labels that reading anything from this
	// upstream applies (tool results, resources, prompts). Unset, a tool
	// whose annotations do not declare a closed world (openWorldHint false)
	// labels the session untrusted_input; set (even to []), it replaces
	// that default for the whole upstream.
	Labels *[]string `json:"labels,omitempty"`
	// Spotlight marks this upstream's tool results and resources as data
	// before the agent reads them: "delimit" or "datamark" (default: off).
	Spotlight string `json:"spotlight,omitempty"`
	// Redact names the personal-data categories masked in this upstream's
	// tool results and resources before the agent reads them.
	Redact []string `json:"redact,omitempty"`
	// Classifier replaces screening.classifier for the content of this
	// upstream: "every_segment" for one whose results carry text anyone
	// can write (web pages, mail, tickets), so that no phrasing escapes
	// the injection classifier there, while the others keep the gate;
	// "gated" for one whose text only the system writes. On a builtin
	// memory upstream it also applies to what is written to memory.
	// Empty: screening.classifier.
	Classifier string `json:"classifier,omitempty"`
	// Namespace is how this upstream's tool and prompt names are served:
	// "prefix" (default: "<upstream>__<name>"), "none" (as the server names
	// them), or a custom prefix such as "gh_" (served as "gh_<name>").
	// Policies always name tools "<upstream>__<name>", whatever is served.
	Namespace string `json:"namespace,omitempty"`
	// Isolation is which agent sessions share one session with this
	// upstream: "session" (default: every agent session gets its own),
	// "agent" (the sessions of one agent share one), "user" (those of one
	// agent acting for one user share one) or "shared" (all agents share
	// one: only for servers that keep no state per client).
	Isolation string `json:"isolation,omitempty"`
	// MaxSessions bounds the sessions open with this upstream at once
	// (default 64 for stdio servers, one process each; 1024 for HTTP).
	MaxSessions int `json:"max_sessions,omitempty"`
	// SessionIdle closes a session with this upstream after this long
	// unused (default 10m); the agent session's next use opens a new one.
	SessionIdle Duration `json:"session_idle,omitempty"`
	// Spares is how many stdio server processes are started ahead of need,
	// so that a new agent session does not wait for one (default 1).
	Spares *int `json:"spares,omitempty"`
}

// Namespace modes and isolation levels of an upstream.
const (
	NamespacePrefix = "prefix"
	NamespaceNone   = "none"

	IsolationSession = "session"
	IsolationAgent   = "agent"
	IsolationUser    = "user"
	IsolationShared  = "shared"
)

// Upstream session defaults.
const (
	DefaultStdioSessions      = 64
	DefaultHTTPSessions       = 1024
	DefaultUpstreamIdle       = 10 * time.Minute
	DefaultStdioSpares        = 1
	MaxUpstreamSessionsConfig = 100000
)

// prefixRE is the form of a custom namespace prefix.
var prefixRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.\-/]{0,31}$`)

// Prefix is the prefix this upstream's tool and prompt names are served
// with ("" for namespace none).
func (u *Upstream) Prefix() string {
	switch u.Namespace {
	case "", NamespacePrefix:
		return u.Name + NamespaceSeparator
	case NamespaceNone:
		return ""
	}
	return u.Namespace
}

// SessionLimit is the configured or default bound on sessions with u.
func (u *Upstream) SessionLimit() int {
	switch {
	case u.MaxSessions > 0:
		return u.MaxSessions
	case u.Stdio != nil:
		return DefaultStdioSessions
	}
	return DefaultHTTPSessions
}

// IdleTimeout is the configured or default idle timeout of sessions with u.
func (u *Upstream) IdleTimeout() time.Duration {
	if u.SessionIdle > 0 {
		return u.SessionIdle.D()
	}
	return DefaultUpstreamIdle
}

// SpareProcesses is how many stdio processes to keep started ahead.
func (u *Upstream) SpareProcesses() int {
	switch {
	case u.Stdio == nil || u.Isolation == IsolationShared:
		return 0
	case u.Spares != nil:
		return *u.Spares
	}
	return DefaultStdioSpares
}

// StdioServer launches a local MCP server. Its environment is exactly Env:
// nothing is inherited from Portcullis' own environment.
type StdioServer struct {
	Command string           `json:"command"`
	Args    []string         `json:"args,omitempty"`
	Dir     string           `json:"dir,omitempty"`
	Env     map[string]Value `json:"env,omitempty"`
	// InheritEnv names variables copied from Portcullis' own environment
	// (typically PATH, so that interpreters such as node can be found).
	InheritEnv []string `json:"inherit_env,omitempty"`
	// SHA256 pins the executable (as found on PATH): a launch whose binary
	// hashes differently is refused.
	SHA256 string `json:"sha256,omitempty"`
	// Files pins the code the launcher runs (sha256 covers only the
	// launcher: node, python, a shim): path (absolute, or relative to the
	// configuration) → SHA-256 hex of the entry script, the package's
	// lockfile, or any file whose change must stop a launch. In the
	// built-in sandbox they are checked inside it, right before the exec.
	Files map[string]string `json:"files,omitempty"`
	// Sandbox confines the server (docs/sandbox.md); absent: the built-in
	// sandbox with its defaults.
	Sandbox *Sandbox `json:"sandbox,omitempty"`
}

// Sandbox modes.
const (
	SandboxBuiltin = "builtin"
	SandboxRuntime = "runtime"
	SandboxNone    = "none"
)

// Sandbox is how a stdio server is confined.
type Sandbox struct {
	// Mode is builtin (default: namespaces, an unprivileged user, Landlock,
	// seccomp, limits), runtime (an external runtime command runs it) or
	// none (no confinement: an operator's explicit choice, logged at every
	// launch).
	Mode string `json:"mode,omitempty"`
	// ReadOnly and ReadWrite are the paths the server may read, or read
	// and write, beyond the system's libraries and its own code (absolute;
	// never the gateway's data directory).
	ReadOnly  []string `json:"read_only,omitempty"`
	ReadWrite []string `json:"read_write,omitempty"`
	// Limits: memory (MiB, default 2048), CPU seconds (default none),
	// processes of its user (default 512), open files (default 1024).
	MemoryMB   int `json:"memory_mb,omitempty"`
	CPUSeconds int `json:"cpu_seconds,omitempty"`
	Processes  int `json:"processes,omitempty"`
	OpenFiles  int `json:"open_files,omitempty"`
	// Runtime is the external runtime's command, the server's command and
	// arguments appended (mode runtime): for example ["runsc", "--network=none", "do"].
	Runtime []string `json:"runtime,omitempty"`
	// Egress are the destinations the server may reach (mode builtin;
	// default none: no network at all), as "HOST:PORT" where HOST is a
	// name, "*.name" for the names under it, an address or a CIDR network.
	// The server reaches them through the gateway's proxy (HTTP_PROXY and
	// HTTPS_PROXY are set for it), which records every connection and
	// raises an alert on a destination off the list.
	Egress []string `json:"egress,omitempty"`
}

// validate checks a sandbox description against the data directory it
// must never reach.
func (s *Sandbox) validate(dataDir string) []error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	switch s.Mode {
	case "", SandboxBuiltin, SandboxNone:
		if len(s.Runtime) > 0 {
			add("sandbox.runtime: only with mode runtime")
		}
	case SandboxRuntime:
		if len(s.Runtime) == 0 {
			add("sandbox.runtime: the runtime's command is required with mode runtime")
		}
	default:
		add("sandbox.mode: %q is not builtin, runtime or none", s.Mode)
	}
	for _, p := range append(append([]string(nil), s.ReadOnly...), s.ReadWrite...) {
		if !filepath.IsAbs(p) {
			add("sandbox: %q is not an absolute path", p)
			continue
		}
		if dataDir != "" && (within(p, dataDir) || within(dataDir, p)) {
			add("sandbox: %q would reach the gateway's data directory", p)
		}
	}
	if s.MemoryMB < 0 || s.CPUSeconds < 0 || s.Processes < 0 || s.OpenFiles < 0 {
		add("sandbox: limits must not be negative")
	}
	if len(s.Egress) > 0 {
		if s.Mode == SandboxNone || s.Mode == SandboxRuntime {
			add("sandbox.egress: only with mode builtin (with none the server has the host's network; a runtime brings its own)")
		}
		if _, err := egress.ParseRules(s.Egress); err != nil {
			add("sandbox.%v", err)
		}
	}
	return errs
}

func within(path, dir string) bool {
	rel, err := filepath.Rel(filepath.Clean(dir), filepath.Clean(path))
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

// HTTPServer is a remote MCP server over streamable HTTP.
type HTTPServer struct {
	URL     string           `json:"url"`
	Headers map[string]Value `json:"headers,omitempty"`
	// SPKISHA256 pins the server's TLS key: the base64 SHA-256 of the leaf
	// certificate's SubjectPublicKeyInfo (as in HPKP). Needs an https URL.
	SPKISHA256 string `json:"spki_sha256,omitempty"`
	// OAuth makes the gateway an OAuth client of this upstream (MCP
	// authorization): it discovers the upstream's authorization server,
	// obtains tokens and sends them; agents' own credentials never reach it.
	OAuth *UpstreamOAuth `json:"oauth,omitempty"`
	// CAFile is a PEM bundle of the roots the upstream's certificate must
	// chain to (a private CA), instead of the system's.
	CAFile string `json:"ca_file,omitempty"`
	// ClientCertificate is the gateway's identity in mutual TLS: its own
	// SVID, or the operator's certificate.
	ClientCertificate *ClientCertificate `json:"client_certificate,omitempty"`
	// Assertion sends, with every request, a signed assertion of who is
	// behind it (agent, user, task, delegation chain), audience the
	// upstream's URL, verifiable with the gateway's JWKS.
	Assertion *UpstreamAssertion `json:"assertion,omitempty"`
}

// ClientCertificate is the certificate the gateway presents to an
// upstream.
type ClientCertificate struct {
	// SVID presents the gateway's own X.509-SVID
	// (spiffe://TRUST_DOMAIN/gateway), issued by its CA for a day and
	// renewed before it expires.
	SVID bool `json:"svid,omitempty"`
	// CertFile and KeyFile are the operator's certificate and key (PEM),
	// read at each new connection.
	CertFile string `json:"cert_file,omitempty"`
	KeyFile  string `json:"key_file,omitempty"`
}

// UpstreamAssertion configures the per-request assertion.
type UpstreamAssertion struct {
	// Header is the header it travels in (default Portcullis-Assertion).
	Header string `json:"header,omitempty"`
}

// OAuth grants the gateway can use towards an upstream.
const (
	GrantAuthorizationCode = "authorization_code"
	GrantClientCredentials = "client_credentials"
)

// UpstreamOAuth configures the gateway as an OAuth client of an upstream.
type UpstreamOAuth struct {
	// Grant is authorization_code (default: a person authorizes the
	// gateway in a browser) or client_credentials (the gateway's own
	// pre-registered client, no person).
	Grant string `json:"grant,omitempty"`
	// ClientID and ClientSecret are a client pre-registered with the
	// upstream's authorization server (required for client_credentials).
	// Without them the gateway registers itself (dynamic client
	// registration) or uses ClientMetadataURL.
	ClientID     string `json:"client_id,omitempty"`
	ClientSecret *Value `json:"client_secret,omitempty"`
	// Issuer is the authorization server the client is registered with:
	// required with a client secret, which is sent to no other (an
	// upstream names its authorization server, and could name its own).
	Issuer string `json:"issuer,omitempty"`
	// PrivateNetworks lets the gateway's OAuth requests reach loopback and
	// private addresses (an authorization server on the internal
	// network); implied when the upstream's own URL is such an address.
	PrivateNetworks bool `json:"private_networks,omitempty"`
	// ClientMetadataURL is the https URL of the gateway's client ID
	// metadata document, used as its client_id where the authorization
	// server supports them.
	ClientMetadataURL string `json:"client_metadata_url,omitempty"`
	// Scopes, when set, are the scopes requested (else those the upstream
	// asks for, or the ones its metadata lists).
	Scopes []string `json:"scopes,omitempty"`
	// PerUser gives every user their own authorization (authorization_code
	// only; needs isolation user or session): a user's calls carry their
	// token. The tool list is read with the operator's authorization.
	PerUser bool `json:"per_user,omitempty"`
}

func (u *Upstream) validate(at string) []error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(at+"."+format, a...)) }
	if !nameRE.MatchString(u.Name) {
		add("name: %q must match %s (no underscores: %q separates upstream and tool)", u.Name, nameRE, NamespaceSeparator)
	}
	kinds := 0
	if u.Stdio != nil {
		kinds++
		if u.Stdio.Command == "" {
			add("stdio.command: required")
		}
		if h := u.Stdio.SHA256; h != "" && !sha256HexRE.MatchString(h) {
			add("stdio.sha256: want 64 lowercase hex digits")
		}
		for p, h := range u.Stdio.Files {
			if !sha256HexRE.MatchString(h) || p == "" {
				add("stdio.files: %q: want a path and 64 lowercase hex digits", p)
			}
		}
		for _, k := range u.Stdio.InheritEnv {
			if !envNameRE.MatchString(k) {
				add("stdio.inherit_env: %q is not a valid variable name", k)
			}
		}
		for k, v := range u.Stdio.Env {
			if !envNameRE.MatchString(k) {
				add("stdio.env: %q is not a valid variable name", k)
			}
			if err := v.validate(k); err != nil {
				add("stdio.env.%s: %v", k, err)
			}
		}
	}
	if u.HTTP != nil {
		kinds++
		errs = append(errs, checkURL(at+".http.url", u.HTTP.URL)...)
		if u.HTTP.SPKISHA256 != "" && !strings.HasPrefix(u.HTTP.URL, "https://") {
			add("http.spki_sha256: needs an https URL")
		}
		for k, v := range u.HTTP.Headers {
			if err := v.validate(k); err != nil {
				add("http.headers.%s: %v", k, err)
			}
		}
		if o := u.HTTP.OAuth; o != nil {
			for _, err := range o.validate(u) {
				add("http.oauth.%v", err)
			}
		}
	}
	if h := u.HTTP; h != nil {
		if c := h.ClientCertificate; c != nil && c.SVID == (c.CertFile != "" || c.KeyFile != "") {
			add("http.client_certificate: give svid: true, or cert_file and key_file")
		} else if c != nil && !c.SVID && (c.CertFile == "" || c.KeyFile == "") {
			add("http.client_certificate: cert_file and key_file go together")
		}
		if (h.CAFile != "" || h.ClientCertificate != nil) && !strings.HasPrefix(h.URL, "https://") {
			add("http: ca_file and client_certificate need an https URL")
		}
		if a := h.Assertion; a != nil && a.Header != "" && !envNameRE.MatchString(strings.ReplaceAll(a.Header, "-", "_")) {
			add("http.assertion.header: %q is not a header name", a.Header)
		}
		if h.Assertion != nil && !SecureURL(h.URL) {
			add("http.assertion: needs an https URL (or http to a loopback address): the assertion is a bearer credential")
		}
	}
	if u.Builtin != "" {
		kinds++
		if u.Builtin != "demo" && u.Builtin != "evidence" && u.Builtin != "memory" {
			add("builtin: %q is unknown (known: demo, evidence, memory)", u.Builtin)
		}
	}
	if kinds != 1 {
		errs = append(errs, fmt.Errorf("%s: exactly one of stdio, http or builtin must be set", at))
	}
	if u.MaxQueuedCalls < -1 || u.QueueTimeout < 0 {
		add("max_queued_calls must be -1 (no queue) or positive, queue_timeout must not be negative")
	}
	if u.CallTimeout < 0 || u.MaxConcurrentCalls < 0 {
		add("call_timeout and max_concurrent_calls must not be negative")
	}
	if u.Labels != nil {
		errs = append(errs, validLabels(at+".labels", *u.Labels)...)
	}
	for _, cat := range u.Redact {
		if !slices.Contains(RedactCategories, cat) {
			add("redact: %q is not one of %v", cat, RedactCategories)
		}
	}
	if s := u.Spotlight; s != "" && s != "delimit" && s != "datamark" {
		add("spotlight: %q is not delimit or datamark", s)
	}
	if !validClassifier(u.Classifier) {
		add("classifier: %q is not %q or %q", u.Classifier, ClassifierGated, ClassifierEvery)
	}
	if ns := u.Namespace; ns != "" && ns != NamespacePrefix && ns != NamespaceNone && !prefixRE.MatchString(ns) {
		add("namespace: %q is not prefix, none, or a prefix matching %s", ns, prefixRE)
	} else if ns != "" && ns != NamespacePrefix && ns != NamespaceNone && !strings.ContainsAny(ns[len(ns)-1:], "_.-/") {
		// A prefix ends in a separator (gh_, fs.): a misspelt keyword
		// ("nonee") would otherwise be served as a prefix glued to names.
		hint := ""
		if s := closest(ns, []string{NamespacePrefix, NamespaceNone}); s != "" {
			hint = fmt.Sprintf(" (did you mean %q?)", s)
		}
		add("namespace: %q is not prefix or none, and a custom prefix ends in _, ., - or /%s", ns, hint)
	}
	switch u.Isolation {
	case "", IsolationSession, IsolationAgent, IsolationUser, IsolationShared:
	default:
		add("isolation: %q is not session, agent, user or shared", u.Isolation)
	}
	if u.MaxSessions < 0 || u.MaxSessions > MaxUpstreamSessionsConfig || u.SessionIdle < 0 || (u.Spares != nil && (*u.Spares < 0 || *u.Spares > 16)) {
		add("max_sessions (0..%d), session_idle (not negative) and spares (0..16) out of range", MaxUpstreamSessionsConfig)
	}
	return errs
}

func (o *UpstreamOAuth) validate(u *Upstream) []error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	for k := range u.HTTP.Headers {
		if strings.EqualFold(k, "Authorization") {
			add("the upstream's headers must not also set Authorization")
		}
	}
	switch o.Grant {
	case "", GrantAuthorizationCode:
		if o.ClientID == "" && o.ClientSecret != nil {
			add("client_secret: needs client_id")
		}
	case GrantClientCredentials:
		if o.ClientID == "" || o.ClientSecret == nil {
			add("client_credentials needs client_id and client_secret")
		}
		if o.PerUser || o.ClientMetadataURL != "" {
			add("per_user and client_metadata_url apply to authorization_code only")
		}
	default:
		add("grant: %q is not %s or %s", o.Grant, GrantAuthorizationCode, GrantClientCredentials)
	}
	if o.ClientSecret != nil {
		if err := o.ClientSecret.validate("client_secret"); err != nil {
			add("client_secret: %v", err)
		}
		if o.Issuer == "" {
			add("issuer: required with client_secret (the secret goes to that authorization server only)")
		}
	}
	if o.Issuer != "" && !SecureURL(o.Issuer) {
		add("issuer: %q must be an https URL (http only on loopback)", o.Issuer)
	}
	if !SecureURL(u.HTTP.URL) {
		add("the upstream's url must be https (http only on loopback) to send it tokens")
	}
	if m := o.ClientMetadataURL; m != "" {
		if pu, err := url.Parse(m); err != nil || pu.Scheme != "https" || pu.Host == "" || pu.Path == "" || pu.Path == "/" {
			add("client_metadata_url: %q must be an https URL with a path", m)
		}
	}
	for _, s := range o.Scopes {
		if !scopeRE.MatchString(s) {
			add("scopes: %q is not a scope token", s)
		}
	}
	if len(o.Scopes) > 0 && o.Grant == GrantClientCredentials {
		add("scopes: for client_credentials the gateway asks for what the upstream names")
	}
	if o.PerUser && u.Isolation != IsolationUser && u.Isolation != IsolationSession && u.Isolation != "" {
		add("per_user needs isolation user or session (a shared link cannot carry one user's token)")
	}
	return errs
}

// namespaceProblems reports upstreams whose served names could collide by
// construction: the same prefix twice, or one prefix beginning another
// (then "a_" + "b_x" and "a_b_" + "x" are one name). Upstreams served
// without a prefix (namespace: none) are checked against each other's
// actual names when they connect.
func namespaceProblems(ups []Upstream) []error {
	var errs []error
	for i := range ups {
		pi := ups[i].Prefix()
		if pi == "" {
			continue
		}
		for j := range ups {
			pj := ups[j].Prefix()
			if i == j || pj == "" {
				continue
			}
			if pi == pj && i < j {
				errs = append(errs, fmt.Errorf("upstreams %s and %s: both serve names with prefix %q; their tools would collide (set namespace on one)", ups[i].Name, ups[j].Name, pi))
			} else if pi != pj && strings.HasPrefix(pj, pi) {
				errs = append(errs, fmt.Errorf("upstreams %s and %s: prefix %q begins prefix %q, so their tool names can collide (choose prefixes where neither begins the other)", ups[i].Name, ups[j].Name, pi, pj))
			}
		}
	}
	return errs
}

// LaunchSpec is what decides what an upstream runs, for its manifest:
// command, arguments, directory and executable pin, or URL and key pin.
// Secret values never enter it.
func (u *Upstream) LaunchSpec() map[string]any {
	switch {
	case u.Stdio != nil:
		return map[string]any{"command": u.Stdio.Command, "args": u.Stdio.Args, "dir": u.Stdio.Dir, "sha256": u.Stdio.SHA256}
	case u.HTTP != nil:
		return map[string]any{"url": u.HTTP.URL, "spki_sha256": u.HTTP.SPKISHA256}
	}
	return map[string]any{"builtin": u.Builtin}
}
