package config

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
)

// ValueRef is a value the configuration gives (a header or an environment
// variable), with where it is and the name it is given.
type ValueRef struct {
	Path  string // e.g. upstreams[0].http.headers.X-Api
	Name  string
	Value Value
}

// Inline is a value written into the configuration file itself (value:).
type Inline struct {
	Path  string
	Name  string
	Value string
}

// String is where the value is, never the value.
func (i Inline) String() string { return i.Path }

// Values lists every value the configuration gives, in a stable order.
func (c *Config) Values() []ValueRef {
	var out []ValueRef
	add := func(at string, vals map[string]Value) {
		names := make([]string, 0, len(vals))
		for k := range vals {
			names = append(names, k)
		}
		slices.Sort(names)
		for _, k := range names {
			out = append(out, ValueRef{Path: at + "." + k, Name: k, Value: vals[k]})
		}
	}
	for i, u := range c.Upstreams {
		at := fmt.Sprintf("upstreams[%d]", i)
		if u.Stdio != nil {
			add(at+".stdio.env", u.Stdio.Env)
		}
		if u.HTTP != nil {
			add(at+".http.headers", u.HTTP.Headers)
		}
	}
	for i, x := range c.Audit.Export {
		at := fmt.Sprintf("audit.export[%d]", i)
		if x.Webhook != nil {
			add(at+".webhook.headers", x.Webhook.Headers)
		}
		if x.OTLP != nil {
			add(at+".otlp.headers", x.OTLP.Headers)
		}
	}
	if w := c.Approvals.Webhook; w != nil {
		add("approvals.webhook.headers", w.Headers)
	}
	if o := c.Telemetry.OTLP; o != nil {
		add("telemetry.otlp.headers", o.Headers)
	}
	if n := c.Detection.Notify; n != nil {
		add("detection.notify.headers", n.Headers)
	}
	if t := c.Detection.Triage; t != nil && t.APIKey != nil {
		add("detection.triage", map[string]Value{"api_key": *t.APIKey})
	}
	return out
}

// InlineValues lists every value given inline, so that a caller with the
// secret detectors can refuse credentials written into the file (they
// belong in the secret store, the environment or a file).
func (c *Config) InlineValues() []Inline {
	var out []Inline
	for _, v := range c.Values() {
		if v.Value.Value != "" {
			out = append(out, Inline{Path: v.Path, Name: v.Name, Value: v.Value.Value})
		}
	}
	return out
}

// FileRef is a file or directory the configuration names, resolved.
type FileRef struct {
	Path string // where in the configuration
	File string
	Dir  bool
}

// Files lists the files and directories serve will read: policy signature
// and keys (when signatures are required), manifest keys and directory,
// federation bundles, the syslog CA, values from files and stdio working
// directories. (Policy files are read by loading the bundle.)
func (c *Config) Files() []FileRef {
	var out []FileRef
	add := func(at, p string, dir bool) {
		if p != "" {
			out = append(out, FileRef{Path: at, File: c.Path(p), Dir: dir})
		}
	}
	if c.Policy.RequireSigned {
		add("policy.signature", c.Policy.Signature, false)
		for i, k := range c.Policy.TrustedKeys {
			add(fmt.Sprintf("policy.trusted_keys[%d]", i), k, false)
		}
	}
	if c.Manifests.RequireSigned {
		add("manifests.dir", c.Manifests.Dir, true)
		for i, k := range c.Manifests.TrustedKeys {
			add(fmt.Sprintf("manifests.trusted_keys[%d]", i), k, false)
		}
	}
	for i, f := range c.Identity.Federation {
		add(fmt.Sprintf("identity.federation[%d].bundle", i), f.Bundle, false)
	}
	for i, x := range c.Audit.Export {
		if x.Syslog != nil {
			add(fmt.Sprintf("audit.export[%d].syslog.ca_file", i), x.Syslog.CAFile, false)
		}
	}
	for _, v := range c.Values() {
		add(v.Path+".from_file", v.Value.FromFile, false)
	}
	for i, u := range c.Upstreams {
		if u.Stdio != nil {
			add(fmt.Sprintf("upstreams[%d].stdio.dir", i), u.Stdio.Dir, true)
		}
	}
	return out
}

// CheckFiles reports each file or directory the configuration names that
// is missing or of the wrong kind: serve would fail on it.
func (c *Config) CheckFiles() error {
	var errs []error
	for _, f := range c.Files() {
		st, err := os.Stat(f.File)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("%s: %w", f.Path, err))
		case f.Dir && !st.IsDir():
			errs = append(errs, fmt.Errorf("%s: %s is not a directory", f.Path, f.File))
		case !f.Dir && st.IsDir():
			errs = append(errs, fmt.Errorf("%s: %s is a directory, want a file", f.Path, f.File))
		}
	}
	// A stdio server's command, resolved as the gateway will launch it
	// (serve would otherwise retry a launch that cannot succeed).
	for i, u := range c.Upstreams {
		if u.Stdio == nil || u.Stdio.Command == "" {
			continue
		}
		if _, err := exec.LookPath(u.Stdio.Command); err != nil {
			errs = append(errs, fmt.Errorf("upstreams[%d].stdio.command: %w", i, err))
		}
	}
	return errors.Join(errs...)
}
