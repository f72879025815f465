package posture

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// Compliance mappings ship as data (frameworks.json): each control of a
// framework names the posture checks ("capability/check") that evidence
// it.

//go:embed frameworks.json
var frameworksJSON []byte

// Framework is a compliance framework's mapping.
type Framework struct {
	ID       string    `json:"id"`
	Title    string    `json:"title"`
	Source   string    `json:"source"`
	Controls []Control `json:"controls"`
}

// Control is one control and the checks that evidence it.
type Control struct {
	ID     string   `json:"id"`
	Title  string   `json:"title"`
	Checks []string `json:"checks"`
}

// Control states.
const (
	Satisfied    = "satisfied"
	Partial      = "partial"
	NotSatisfied = "not-satisfied"
)

// ControlResult is a control as the report's checks evidence it.
type ControlResult struct {
	Control
	State string `json:"state"`
	// Met and Unmet are the checks, with their evidence.
	Met   []CheckRef `json:"met"`
	Unmet []CheckRef `json:"unmet"`
}

// CheckRef is a check as a control cites it.
type CheckRef struct {
	Ref      string `json:"check"` // capability/check
	Need     string `json:"need"`
	Evidence string `json:"evidence"`
}

// MappingNote is the caveat every compliance report carries.
var MappingNote string

var frameworks []Framework

func init() {
	var doc struct {
		Note       string      `json:"note"`
		Frameworks []Framework `json:"frameworks"`
	}
	if err := json.Unmarshal(frameworksJSON, &doc); err != nil {
		panic("posture: frameworks.json: " + err.Error())
	}
	MappingNote, frameworks = doc.Note, doc.Frameworks
}

// Frameworks lists the shipped mappings.
func Frameworks() []Framework { return frameworks }

// FrameworkByID finds a mapping.
func FrameworkByID(id string) (Framework, error) {
	var ids []string
	for _, f := range frameworks {
		if f.ID == id {
			return f, nil
		}
		ids = append(ids, f.ID)
	}
	return Framework{}, fmt.Errorf("framework %q: one of %s", id, strings.Join(ids, ", "))
}

// Evaluate reports each of fw's controls against the report's checks.
func (r *Report) Evaluate(fw Framework) []ControlResult {
	checks := map[string]CheckResult{}
	for _, c := range r.Capabilities {
		for _, ch := range c.Checks {
			checks[c.ID+"/"+ch.ID] = ch
		}
	}
	out := make([]ControlResult, 0, len(fw.Controls))
	for _, ctl := range fw.Controls {
		cr := ControlResult{Control: ctl, Met: []CheckRef{}, Unmet: []CheckRef{}}
		for _, ref := range ctl.Checks {
			ch, ok := checks[ref]
			ev := CheckRef{Ref: ref, Need: ch.Need, Evidence: ch.Evidence}
			if ok && ch.Met {
				cr.Met = append(cr.Met, ev)
			} else {
				cr.Unmet = append(cr.Unmet, ev)
			}
		}
		switch {
		case len(cr.Unmet) == 0:
			cr.State = Satisfied
		case len(cr.Met) > 0:
			cr.State = Partial
		default:
			cr.State = NotSatisfied
		}
		out = append(out, cr)
	}
	return out
}

// WriteControls writes a framework's controls as a table.
func WriteControls(w io.Writer, fw Framework, cs []ControlResult) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s (%s)\n%s\n\n", fw.Title, fw.Source, MappingNote)
	n := map[string]int{}
	for _, c := range cs {
		n[c.State]++
		fmt.Fprintf(&b, "%-13s %-10s %s\n", c.State, c.ID, c.Title)
		for _, m := range c.Met {
			fmt.Fprintf(&b, "                + %s: %s\n", m.Ref, m.Evidence)
		}
		for _, m := range c.Unmet {
			fmt.Fprintf(&b, "                - %s: %s (now: %s)\n", m.Ref, m.Need, m.Evidence)
		}
	}
	fmt.Fprintf(&b, "\n%d satisfied, %d partial, %d not satisfied of %d controls\n", n[Satisfied], n[Partial], n[NotSatisfied], len(cs))
	_, err := io.WriteString(w, b.String())
	return err
}
