package config

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/portcullis-dev/portcullis/internal/screen"
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
}

// RedactCategories are the personal-data categories redaction can mask.
var RedactCategories = append([]string{screen.PIIEmail, screen.PIIPaymentCard, screen.PIIIBAN, screen.PIIUSSSN, screen.PIIPhone, screen.PIIIPAddress}, screen.NationalIDTypes...)

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
}

// HTTPServer is a remote MCP server over streamable HTTP.
type HTTPServer struct {
	URL     string           `json:"url"`
	Headers map[string]Value `json:"headers,omitempty"`
	// SPKISHA256 pins the server's TLS key: the base64 SHA-256 of the leaf
	// certificate's SubjectPublicKeyInfo (as in HPKP). Needs an https URL.
	SPKISHA256 string `json:"spki_sha256,omitempty"`
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
	}
	if u.Builtin != "" {
		kinds++
		if u.Builtin != "demo" {
			add("builtin: %q is unknown (known: demo)", u.Builtin)
		}
	}
	if kinds != 1 {
		add("exactly one of stdio, http, builtin must be set")
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
