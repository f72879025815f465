package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// Version is the only configuration schema version this build reads.
const Version = 1

// Defaults, named so that documentation and code agree.
const (
	DefaultListenAddress = "127.0.0.1:8470"
	DefaultAdminAddress  = "127.0.0.1:8471"
	DefaultDataDir       = "portcullis-data"
	DefaultIssuer        = "portcullis"
	DefaultAudience      = "portcullis-gateway"
	DefaultTokenTTL      = 10 * time.Minute
	DefaultMaxTokenTTL   = time.Hour
	DefaultCallTimeout   = 60 * time.Second
)

// MaxConfigBytes bounds the size of a configuration file.
const MaxConfigBytes = 1 << 20

// Config is the whole Portcullis configuration file.
type Config struct {
	Version   int        `json:"version"`
	DataDir   string     `json:"data_dir,omitempty"`
	Listen    Listen     `json:"listen,omitempty"`
	Auth      Auth       `json:"auth,omitempty"`
	Policy    Policy     `json:"policy,omitempty"`
	Agents    []Agent    `json:"agents,omitempty"`
	Admins    []Admin    `json:"admins,omitempty"`
	Identity  Identity   `json:"identity,omitempty"`
	Upstreams []Upstream `json:"upstreams,omitempty"`
	Tools     []Tool     `json:"tools,omitempty"`
	// Pinning is the tool-definition pinning mode: "tofu" (default: what an
	// upstream offers in its first minute is approved) or "strict" (nothing
	// is served until an operator approves it).
	Pinning string `json:"pinning,omitempty"`
	// Manifests configures signed server manifests.
	Manifests Manifests `json:"manifests,omitempty"`
	Limits    Limits    `json:"limits,omitempty"`
	Store     Store     `json:"store,omitempty"`
	Audit     Audit     `json:"audit,omitempty"`
	Telemetry Telemetry `json:"telemetry,omitempty"`
	Approvals Approvals `json:"approvals,omitempty"`
	// Detection watches agents against their declared baselines and
	// answers deviations.
	Detection Detection `json:"detection,omitempty"`
	// Memory configures the built-in memory (builtin: memory).
	Memory Memory `json:"memory,omitempty"`
	Log    Log    `json:"log,omitempty"`
	// Screening decides what happens to content detections.
	Screening Screening `json:"screening,omitempty"`
	// Governance names the governance documents and approvers (posture).
	Governance Governance `json:"governance,omitempty"`
	// Console configures the web console's sign-in.
	Console Console `json:"console,omitempty"`

	// dir is the directory of the file the config was loaded from; relative
	// paths in the file are resolved against it.
	dir  string
	file string
}

// Identity configures the agent CA.
type Identity struct {
	// TrustDomain of the SPIFFE IDs the CA issues.
	TrustDomain string `json:"trust_domain,omitempty"`
	// SVIDTTL is the lifetime of issued X.509-SVIDs (1m to 1h).
	SVIDTTL Duration `json:"svid_ttl,omitempty"`
	// JoinTokenTTL bounds how long a join token can wait to be used.
	JoinTokenTTL Duration `json:"join_token_ttl,omitempty"`
	// Federation trusts SVIDs of other SPIFFE trust domains (SPIRE, ...).
	Federation []Federation `json:"federation,omitempty"`
	// OIDC, when set, is the identity provider whose ID tokens name the
	// user a task is started for.
	OIDC *OIDC `json:"oidc,omitempty"`
}

// OIDC is an OpenID Connect issuer whose ID tokens are verified against its
// published keys (JWKS).
type OIDC struct {
	Issuer   string `json:"issuer"`
	ClientID string `json:"client_id"`
	// UserClaim names the claim that is the user (default "email").
	UserClaim string `json:"user_claim,omitempty"`
}

// Federation is another SPIFFE trust domain whose SVIDs the gateway
// accepts, and which of its SPIFFE IDs are which configured agents.
type Federation struct {
	TrustDomain string `json:"trust_domain"`
	// Bundle is a PEM file of the trust domain's X.509 authorities.
	Bundle string `json:"bundle"`
	// Agents maps SPIFFE IDs of that domain to configured agent names; an
	// SVID not listed is refused.
	Agents map[string]string `json:"agents"`
}

// TLS configures TLS on the agent listener.
type TLS struct {
	// Enabled serves agents over TLS with a certificate from the agent CA,
	// and accepts (does not require) client SVIDs (mutual TLS).
	Enabled bool `json:"enabled,omitempty"`
	// Names are the DNS names and IPs the gateway's certificate covers.
	Names []string `json:"names,omitempty"`
	// CertFile and KeyFile are the operator's own certificate (PEM, the
	// chain from the leaf) and key, served instead of one from the agent
	// CA and read again when they change (renewal); agents' SVIDs are
	// still accepted for mutual TLS.
	CertFile string `json:"cert_file,omitempty"`
	KeyFile  string `json:"key_file,omitempty"`
}

// Listen holds the network addresses Portcullis serves on.
type Listen struct {
	TLS TLS `json:"tls,omitempty"`
	// Address serves MCP (streamable HTTP) for agents at /mcp.
	Address string `json:"address,omitempty"`
	// Admin serves /metrics, /healthz and /readyz. It is separate so that the
	// agent-facing listener exposes nothing but MCP.
	Admin string `json:"admin,omitempty"`
	// AllowedHosts are the Host header values agents may use (names, with
	// or without a port). Default: when the listener is on a loopback
	// address, only localhost, 127.0.0.1 and [::1] (DNS rebinding
	// protection); otherwise any. ["*"] allows any.
	AllowedHosts []string `json:"allowed_hosts,omitempty"`
	// AllowedOrigins are the browser origins (scheme://host[:port]) whose
	// requests are accepted; a request with another Origin header is
	// refused. Default: on loopback, origins on localhost, 127.0.0.1 and
	// [::1]; otherwise none. Requests without an Origin header (not from a
	// browser) are not affected.
	AllowedOrigins []string `json:"allowed_origins,omitempty"`
	// PublicURL is the origin agents reach the gateway at
	// (scheme://host[:port], e.g. behind a TLS proxy): the resource URL of
	// the OAuth metadata and challenges, instead of the request's Host;
	// its host is allowed (with the loopback names) when AllowedHosts is
	// empty.
	PublicURL string `json:"public_url,omitempty"`
}

// Policy names the Cedar policy files or directories.
type Policy struct {
	Paths []string `json:"paths,omitempty"`
	// RequireSigned refuses a bundle (at start and at reload) unless
	// Signature holds a note signed for its version by a TrustedKeys key.
	RequireSigned bool `json:"require_signed,omitempty"`
	// Signature is the bundle signature file (`portcullis policy sign`).
	Signature string `json:"signature,omitempty"`
	// TrustedKeys are files holding note verifier keys of policy signers.
	TrustedKeys []string `json:"trusted_keys,omitempty"`
	// ReloadInterval is how often the files are checked for changes (a
	// SIGHUP also reloads). Zero: 2s.
	ReloadInterval Duration `json:"reload_interval,omitempty"`
}

// Agent declares an agent that may hold credentials.
type Agent struct {
	Name  string   `json:"name"`
	Roles []string `json:"roles,omitempty"`
}

// Value is a configuration value that may be a secret. Secret values must be
// references (FromEnv or FromFile), never inline.
type Value struct {
	Value    string `json:"value,omitempty"`
	FromEnv  string `json:"from_env,omitempty"`
	FromFile string `json:"from_file,omitempty"`
	// FromSecret names a secret in Portcullis' encrypted secret store
	// (`portcullis secret set NAME`).
	FromSecret string `json:"from_secret,omitempty"`
}

// Store configures the embedded store.
type Store struct {
	// Synchronous is SQLite's durability level for every write: "full"
	// (default: fsynced, one fsync per group-committed batch, so an event
	// survives power loss once durable, when audit.sync says) or "normal"
	// (it survives a crash of the process, not of the machine; no fsync
	// on the request path).
	Synchronous string `json:"synchronous,omitempty"`
	// Postgres, if set, is the URL of a PostgreSQL database (postgres://...)
	// that holds the store instead of the data directory's SQLite file:
	// several gateways on one database are one fleet (one audit log,
	// shared revocations, approvals, grants, pins, budgets and secrets).
	// A URL with a password is given with from_env or from_file.
	Postgres *Value `json:"postgres,omitempty"`
}

// Manifests configures signed server manifests (`portcullis tools sign`).
type Manifests struct {
	// RequireSigned: an upstream without a valid manifest is not started,
	// and only the definitions its manifest lists are served.
	RequireSigned bool `json:"require_signed,omitempty"`
	// Dir holds <upstream>.manifest files.
	Dir string `json:"dir,omitempty"`
	// TrustedKeys are files holding note verifier keys of manifest signers.
	TrustedKeys []string `json:"trusted_keys,omitempty"`
}

// Approvals configures human approval of calls that policy holds.
type Approvals struct {
	// Timeout is how long a held call waits for a decision; then it is
	// denied. Default 5m, at most 1h.
	Timeout Duration `json:"timeout,omitempty"`
	// Webhook, if set, is told of every new request (JSON, with the
	// arguments: point it at a channel trusted with them).
	Webhook *WebhookExport `json:"webhook,omitempty"`
}

// Telemetry configures OpenTelemetry export.
type Telemetry struct {
	// OTLP, if set, receives spans of every request's stages over OTLP/HTTP
	// (JSON) at <url>/v1/traces.
	OTLP *WebhookExport `json:"otlp,omitempty"`
}

// Log configures structured logging.
type Log struct {
	Level  string `json:"level,omitempty"`
	Format string `json:"format,omitempty"`
}

var (
	nameRE      = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)
	agentRE     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	envNameRE   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	sha256HexRE = regexp.MustCompile(`^[0-9a-f]{64}$`)
	sensitiveN  = regexp.MustCompile(`(?i)(auth|token|secret|passw|key|cookie|credential|session)`)
)

// Load reads, strictly decodes and validates the configuration file at path.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open config: %w", err)
	}
	defer f.Close()
	var buf bytes.Buffer
	n, err := buf.ReadFrom(io.LimitReader(f, MaxConfigBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	if n > MaxConfigBytes {
		return nil, fmt.Errorf("read config: file exceeds %d bytes", MaxConfigBytes)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("resolve config path: %w", err)
	}
	c, err := Parse(buf.Bytes(), filepath.Dir(abs))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	c.file = abs
	return c, nil
}

// Parse strictly decodes YAML, applies defaults and validates. dir is the base
// for relative paths.
func Parse(data []byte, dir string) (*Config, error) {
	if len(data) > MaxConfigBytes {
		return nil, fmt.Errorf("parse config: exceeds %d bytes", MaxConfigBytes)
	}
	if err := checkKeys(data); err != nil {
		return nil, err
	}
	var c Config
	if err := yaml.UnmarshalStrict(data, &c); err != nil {
		return nil, locate(data, err)
	}
	c.dir = dir
	c.applyDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

func (c *Config) applyDefaults() {
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir
	}
	if c.Listen.Address == "" {
		c.Listen.Address = DefaultListenAddress
	}
	if c.Listen.Admin == "" {
		c.Listen.Admin = DefaultAdminAddress
	}
	if c.Auth.Issuer == "" {
		c.Auth.Issuer = DefaultIssuer
	}
	if c.Auth.Audience == "" {
		c.Auth.Audience = DefaultAudience
	}
	if c.Auth.MaxTTL == 0 {
		c.Auth.MaxTTL = Duration(DefaultMaxTokenTTL)
	}
	if c.Auth.DefaultTTL == 0 {
		c.Auth.DefaultTTL = Duration(DefaultTokenTTL)
	}
	c.Limits.applyDefaults()
	if c.Policy.ReloadInterval == 0 {
		c.Policy.ReloadInterval = Duration(2 * time.Second)
	}
	if c.Identity.TrustDomain == "" {
		c.Identity.TrustDomain = "portcullis.local"
	}
	if c.Identity.SVIDTTL == 0 {
		c.Identity.SVIDTTL = Duration(time.Hour)
	}
	if c.Identity.JoinTokenTTL == 0 {
		c.Identity.JoinTokenTTL = Duration(10 * time.Minute)
	}
	if c.Listen.TLS.Enabled && len(c.Listen.TLS.Names) == 0 {
		c.Listen.TLS.Names = []string{"localhost", "127.0.0.1", "::1"}
	}
	if c.Pinning == "" {
		c.Pinning = "tofu"
	}
	if c.Approvals.Timeout == 0 {
		c.Approvals.Timeout = Duration(5 * time.Minute)
	}
	if c.Audit.Origin == "" {
		c.Audit.Origin = DefaultAuditOrigin
	}
	if c.Audit.CheckpointInterval == 0 {
		c.Audit.CheckpointInterval = Duration(DefaultCheckpointInterval)
	}
	if c.Store.Synchronous == "" {
		c.Store.Synchronous = "full"
	}
	if c.Audit.Sync == "" {
		// The local journal's decisions are committed before the relay and
		// fsynced within the window behind it (see Audit.Sync); a fleet's
		// log is the database's, whose flush only a waiting call finds
		// failing, so there the answer waits for it.
		c.Audit.Sync = SyncBackground
		if c.Store.Postgres != nil {
			c.Audit.Sync = SyncBeforeAnswer
		}
	}
	if c.Audit.SyncWindow == 0 {
		c.Audit.SyncWindow = Duration(DefaultSyncWindow)
		if c.Audit.Sync == SyncBackground {
			c.Audit.SyncWindow = Duration(DefaultBackgroundSyncWindow)
		}
	}
}

// Validate reports every problem it finds, joined.
func (c *Config) Validate() error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if c.Version != Version {
		add("version: must be %d, got %d", Version, c.Version)
	}
	if c.Auth.MaxTTL.D() > 24*time.Hour {
		add("auth.max_ttl: %s exceeds 24h; agent credentials are minutes, not days", c.Auth.MaxTTL.D())
	}
	if c.Auth.DefaultTTL > c.Auth.MaxTTL {
		add("auth.default_ttl: exceeds auth.max_ttl")
	}
	seen := map[string]bool{}
	for i, a := range c.Agents {
		if !agentRE.MatchString(a.Name) {
			add("agents[%d].name: %q must match %s", i, a.Name, agentRE)
		}
		if seen[a.Name] {
			add("agents[%d].name: duplicate %q", i, a.Name)
		}
		seen[a.Name] = true
		for _, r := range a.Roles {
			if !agentRE.MatchString(r) {
				add("agents[%d].roles: %q must match %s", i, r, agentRE)
			}
		}
	}
	for i, a := range c.Admins {
		if !agentRE.MatchString(a.Name) {
			add("admins[%d].name: %q must match %s", i, a.Name, agentRE)
		}
		if seen[a.Name] {
			add("admins[%d].name: %q is also an agent or a duplicate; a person and an agent never share a name", i, a.Name)
		}
		seen[a.Name] = true
		for _, r := range a.Roles {
			if !slices.Contains(ConsoleRoles, r) {
				add("admins[%d].roles: %q is not one of %v", i, r, ConsoleRoles)
			}
		}
	}
	upSeen := map[string]bool{}
	for i, u := range c.Upstreams {
		errs = append(errs, u.validate(fmt.Sprintf("upstreams[%d]", i))...)
		if u.Stdio != nil && u.Stdio.Sandbox != nil {
			for _, err := range u.Stdio.Sandbox.validate(c.Path(c.DataDir)) {
				add("upstreams[%d].stdio.%v", i, err)
			}
		}
		if upSeen[u.Name] {
			add("upstreams[%d].name: duplicate %q", i, u.Name)
		}
		upSeen[u.Name] = true
	}
	errs = append(errs, namespaceProblems(c.Upstreams)...)
	errs = append(errs, c.Screening.validate(upSeen)...)
	toolSeen := map[string]bool{}
	for i, t := range c.Tools {
		if up, _, ok := strings.Cut(t.Name, NamespaceSeparator); !ok {
			add("tools[%d].name: %q must be qualified as <upstream>__<tool>", i, t.Name)
		} else if !upSeen[up] {
			// Its settings would never apply: a typo, or an upstream removed.
			add("tools[%d].name: %q names upstream %q, which is not configured", i, t.Name, up)
		}
		if toolSeen[t.Name] {
			add("tools[%d].name: duplicate %q", i, t.Name)
		}
		toolSeen[t.Name] = true
		if len(t.Classification) == 0 && t.Labels == nil && len(t.Arguments) == 0 && len(t.TrustedFields) == 0 {
			add("tools[%d]: needs classification, labels, arguments or trusted_fields", i)
		}
		for _, a := range slices.Sorted(maps.Keys(t.Arguments)) {
			if r := t.Arguments[a]; r != RoleNone && !slices.Contains(ArgumentRoles, r) {
				add("tools[%d].arguments.%s: role %q is not one of %v or %s", i, a, r, ArgumentRoles, RoleNone)
			}
		}
		if len(t.TrustedFields) > 0 && !slices.Equal(t.Classification, []string{"read_only"}) {
			add("tools[%d].trusted_fields: only for a tool classified [read_only] (a tool that changes something may echo the agent's own arguments back)", i)
		}
		for j, f := range t.TrustedFields {
			if err := validFieldPath(f); err != nil {
				add("tools[%d].trusted_fields[%d]: %v", i, j, err)
			}
		}
		if t.Labels != nil {
			errs = append(errs, validLabels(fmt.Sprintf("tools[%d].labels", i), *t.Labels)...)
		}
		for _, cl := range t.Classification {
			if !slices.Contains(ToolClasses, cl) {
				add("tools[%d].classification: %q is not one of %v", i, cl, ToolClasses)
			}
		}
	}
	if p := c.Listen.PublicURL; p != "" {
		if u, err := url.Parse(p); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || strings.Trim(u.Path, "/") != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			add("listen.public_url: %q must be an origin, scheme://host[:port] (no path)", p)
		}
	}
	if t := c.Listen.TLS; (t.CertFile == "") != (t.KeyFile == "") || (t.CertFile != "" && !t.Enabled) {
		add("listen.tls: cert_file and key_file go together, with enabled: true")
	}
	errs = append(errs, c.Auth.validate(c)...)
	errs = append(errs, c.Detection.validate(c)...)
	errs = append(errs, c.Memory.validate()...)
	errs = append(errs, c.Governance.validate()...)
	errs = append(errs, c.Console.validate()...)
	errs = append(errs, c.Limits.validate()...)
	if c.Policy.RequireSigned && (c.Policy.Signature == "" || len(c.Policy.TrustedKeys) == 0) {
		add("policy.require_signed: needs policy.signature and policy.trusted_keys")
	}
	errs = append(errs, c.Audit.validate(c)...)
	if o := c.Telemetry.OTLP; o != nil {
		errs = append(errs, o.validate("telemetry.otlp")...)
	}
	if c.Manifests.RequireSigned && (c.Manifests.Dir == "" || len(c.Manifests.TrustedKeys) == 0) {
		add("manifests.require_signed: needs manifests.dir and manifests.trusted_keys")
	}
	if t := c.Identity.SVIDTTL.D(); t < time.Minute || t > time.Hour {
		add("identity.svid_ttl: between 1m and 1h")
	}
	if o := c.Identity.OIDC; o != nil {
		errs = append(errs, checkURL("identity.oidc.issuer", o.Issuer)...)
		if o.ClientID == "" {
			add("identity.oidc.client_id: required")
		}
	}
	for i, f := range c.Identity.Federation {
		if f.TrustDomain == "" || f.TrustDomain == c.Identity.TrustDomain || f.Bundle == "" || len(f.Agents) == 0 {
			add("identity.federation[%d]: trust_domain (not our own), bundle and agents are required", i)
		}
		for id, name := range f.Agents {
			if !strings.HasPrefix(id, "spiffe://"+f.TrustDomain+"/") {
				add("identity.federation[%d].agents: %q is not in %s", i, id, f.TrustDomain)
			}
			if _, ok := c.Agent(name); !ok {
				add("identity.federation[%d].agents: %q is not a configured agent", i, name)
			}
		}
	}
	if t := c.Identity.JoinTokenTTL.D(); t < time.Minute || t > 24*time.Hour {
		add("identity.join_token_ttl: between 1m and 24h")
	}
	if c.Pinning != "tofu" && c.Pinning != "strict" {
		add("pinning: %q is not tofu or strict", c.Pinning)
	}
	if t := c.Approvals.Timeout.D(); t < time.Second || t > time.Hour {
		add("approvals.timeout: between 1s and 1h")
	}
	if w := c.Approvals.Webhook; w != nil {
		errs = append(errs, w.validate("approvals.webhook")...)
	}
	if c.Store.Synchronous != "full" && c.Store.Synchronous != "normal" {
		add("store.synchronous: %q is not full or normal", c.Store.Synchronous)
	}
	if p := c.Store.Postgres; p != nil {
		errs = append(errs, checkPostgres(*p)...)
	}
	switch c.Log.Level {
	case "", "debug", "info", "warn", "error":
	default:
		add("log.level: %q is not debug, info, warn or error", c.Log.Level)
	}
	switch c.Log.Format {
	case "", "json", "text":
	default:
		add("log.format: %q is not json or text", c.Log.Format)
	}
	return errors.Join(errs...)
}

func checkURL(at, u string) []error {
	if !strings.HasPrefix(u, "https://") && !strings.HasPrefix(u, "http://") {
		return []error{fmt.Errorf("%s: %q must be an http(s) URL", at, u)}
	}
	if p, err := url.Parse(u); err != nil || p.Hostname() == "" {
		return []error{fmt.Errorf("%s: %q must name a host", at, u)}
	}
	return nil
}

// checkPostgres checks store.postgres: a reference, or an inline URL
// without a password. The secret store lives in this database, so it
// cannot hold the database's own password.
func checkPostgres(v Value) []error {
	if err := v.validate("store.postgres"); err != nil {
		return []error{fmt.Errorf("store.postgres: %w", err)}
	}
	if v.FromSecret != "" {
		return []error{errors.New("store.postgres: from_secret cannot be used: the secret store is in this database; use from_env or from_file")}
	}
	if v.Value == "" {
		return nil
	}
	u, err := url.Parse(v.Value)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return []error{errors.New("store.postgres: the value must be a postgres:// URL")}
	}
	_, inUser := u.User.Password()
	if inUser || u.Query().Has("password") {
		return []error{errors.New("store.postgres: the URL holds a password: give it with from_env or from_file, never inline")}
	}
	return nil
}

// NamespaceSeparator joins an upstream's name and its tool or prompt name.
const NamespaceSeparator = "__"

func (v Value) validate(name string) error {
	n := 0
	for _, s := range []string{v.Value, v.FromEnv, v.FromFile, v.FromSecret} {
		if s != "" {
			n++
		}
	}
	if n != 1 {
		return errors.New("exactly one of value, from_env, from_file, from_secret must be set")
	}
	if v.Value != "" && sensitiveN.MatchString(name) {
		return fmt.Errorf("%q looks like a secret: give it with from_env or from_file, never inline", name)
	}
	return nil
}

// Resolve returns the value, reading references. The result may be a secret:
// callers must not log it. secrets opens from_secret references (nil: they
// are an error).
func (v Value) Resolve(baseDir string, secrets func(name string) (string, error)) (string, error) {
	switch {
	case v.FromSecret != "":
		if secrets == nil {
			return "", fmt.Errorf("resolve value: secret %s: no secret store here", v.FromSecret)
		}
		return secrets(v.FromSecret)
	case v.FromEnv != "":
		s, ok := os.LookupEnv(v.FromEnv)
		if !ok {
			return "", fmt.Errorf("resolve value: environment variable %s is not set", v.FromEnv)
		}
		return s, nil
	case v.FromFile != "":
		p := v.FromFile
		if !filepath.IsAbs(p) {
			p = filepath.Join(baseDir, p)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return "", fmt.Errorf("resolve value: %w", err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	default:
		return v.Value, nil
	}
}

// Path resolves p relative to the configuration file's directory.
func (c *Config) Path(p string) string {
	if p == "" || filepath.IsAbs(p) || c.dir == "" {
		return p
	}
	return filepath.Join(c.dir, p)
}

// ErrUnknownAgent is returned when a credential or an operation names an
// agent the configuration does not (or no longer) declare.
var ErrUnknownAgent = errors.New("agent not configured")

// ReadFile reads a file the configuration names (resolved as Path does),
// refusing one larger than max bytes: keys, signatures, bundles and
// manifests are small, and a path pointed at something else must not be
// read whole.
func (c *Config) ReadFile(p string, max int64) ([]byte, error) {
	path := c.Path(p)
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s exceeds %d bytes", path, max)
	}
	return b, nil
}

// Dir is the directory relative paths are resolved against.
func (c *Config) Dir() string { return c.dir }

// File is the file the configuration was loaded from ("" when it was not).
func (c *Config) File() string { return c.file }

// SetDir sets the base directory for relative paths (for built-in configs).
func (c *Config) SetDir(dir string) { c.dir = dir }

// Agent returns the declared agent with the given name.
func (c *Config) Agent(name string) (Agent, bool) {
	for _, a := range c.Agents {
		if a.Name == name {
			return a, true
		}
	}
	return Agent{}, false
}
