package config

import (
	"fmt"
	"slices"
	"strings"
)

// Inline is a value written into the configuration file itself (value:),
// with where it is and the name it is given (a header or variable).
type Inline struct {
	Path  string // e.g. upstreams[0].http.headers.X-Api
	Name  string
	Value string
}

// InlineValues lists every value given inline, in a stable order, so that
// a caller with the secret detectors can refuse credentials written into
// the file (they belong in the secret store, the environment or a file).
func (c *Config) InlineValues() []Inline {
	var out []Inline
	add := func(at string, vals map[string]Value) {
		names := make([]string, 0, len(vals))
		for k := range vals {
			names = append(names, k)
		}
		slices.Sort(names)
		for _, k := range names {
			if v := vals[k]; v.Value != "" {
				out = append(out, Inline{Path: at + "." + k, Name: k, Value: v.Value})
			}
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
	return out
}

// String is where the value is, never the value.
func (i Inline) String() string { return strings.TrimSpace(i.Path) }
