package posture

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"strings"
	"time"
)

// WriteText writes the report as a table: each capability's tier, its
// evidence and what the next tier needs, then the outcome metrics.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "Posture of %s (sha256 %s) at %s\n", orDash(r.Config), short(r.ConfigSHA256), r.Generated.Format(time.RFC3339))
	fmt.Fprintf(&b, "policy %s", r.PolicyVersion)
	if r.Checkpoint != nil {
		fmt.Fprintf(&b, "; audit checkpoint %d (%s)", r.Checkpoint.Size, short(r.Checkpoint.Root))
	}
	b.WriteString("\n\nTIER  TARGET  CAPABILITY\n")
	for _, c := range r.Capabilities {
		target := "-"
		if c.Target != None {
			target = c.Target.String()
			if c.Below() {
				target += " !"
			}
		}
		fmt.Fprintf(&b, "%-5s %-7s %s (%s)\n", c.Tier, target, c.Name, c.Domain[:2])
		for _, e := range c.Evidence {
			fmt.Fprintf(&b, "              + %s\n", e)
		}
		if c.Tier < Advanced {
			for _, m := range c.Missing {
				fmt.Fprintf(&b, "              for %s: %s\n", c.Tier+1, m)
			}
		}
	}
	if m := r.Metrics; m != nil {
		fmt.Fprintf(&b, "\nOutcome metrics, last %s (since %s)\n", m.Window, m.Since.Format(time.RFC3339))
		sampled := ""
		if m.Sampled {
			sampled = " (the last 10000)"
		}
		fmt.Fprintf(&b, "  decisions        %d%s: %d allowed, %d denied (%s), %d held (%s)\n", m.Decisions, sampled, m.Allowed, m.Denied, pct(m.Denied, m.Decisions), m.Held, pct(m.Held, m.Decisions))
		fmt.Fprintf(&b, "  explainability   %s name their policies and bundle; %s carry a request ID\n", pct(m.Explained, m.Decisions), pct(m.WithRequestID, m.Decisions))
		fmt.Fprintf(&b, "  coverage         %d of %d agents active; idle: %s; not enrolled but tried: %s; unknown targets asked: %d\n",
			len(m.ActiveAgents), len(m.ActiveAgents)+len(m.IdleAgents), orDash(strings.Join(m.IdleAgents, ", ")), orDash(strings.Join(m.Unenrolled, ", ")), m.UnknownTargets)
		fmt.Fprintf(&b, "  alerts           %d, %s triaged; drift alerts %d\n", m.Alerts, pct(m.Triaged, m.Alerts), m.Drift)
		fmt.Fprintf(&b, "  approval latency %s\n  dwell time       %s\n  detection speed  %s\n", m.ApprovalLatency, m.DwellTime, m.DetectionSpeed)
		if len(m.Trend) > 0 {
			b.WriteString("  trend            date        decisions  denied  held  alerts\n")
			for _, d := range m.Trend {
				fmt.Fprintf(&b, "                   %s  %9d  %6d  %4d  %6d\n", d.Date, d.Decisions, d.Denied, d.Held, d.Alerts)
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func (s Stats) String() string {
	if s.N == 0 {
		return "n/a (none in the window)"
	}
	return fmt.Sprintf("p50 %s, p95 %s (n=%d)", round(s.P50), round(s.P95), s.N)
}

func round(sec float64) time.Duration {
	d := time.Duration(sec * float64(time.Second))
	switch {
	case d > time.Minute:
		return d.Round(time.Second)
	case d > time.Second:
		return d.Round(10 * time.Millisecond)
	}
	return d.Round(time.Microsecond)
}

func short(h string) string {
	if len(h) > 16 {
		return h[:16] + "…"
	}
	return orDash(h)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

//go:embed report.html.tmpl
var reportHTML string

var reportTmpl = template.Must(template.New("report").Funcs(template.FuncMap{
	"pct":   pct,
	"stats": func(s Stats) string { return s.String() },
	"join":  strings.Join,
	"next":  func(t Tier) Tier { return t + 1 },
	"long":  func(t Tier) string { return t.Long() },
	"time":  func(t time.Time) string { return t.Format(time.RFC3339) },
}).Parse(reportHTML))

// WriteHTML writes the report as one self-contained HTML page (no script,
// no external resource).
func (r *Report) WriteHTML(w io.Writer) error {
	return reportTmpl.Execute(w, r)
}
