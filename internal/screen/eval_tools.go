package screen

import (
	"fmt"
	"sort"
	"strings"
)

// ToolReport is the result of screening a corpus of tool definitions.
type ToolReport struct {
	Records    int           `json:"records"`
	Categories []CategoryRow `json:"categories"`
	// DescriptionLevel totals the attacks whose malice is in the
	// definition (everything but code_level/*) against all benign tools.
	DescriptionLevel CategoryRow `json:"description_level"`
	// CodeLevel totals the attacks whose malice is only in the server's
	// code: a definition screener is expected to miss them.
	CodeLevel CategoryRow    `json:"code_level"`
	Rules     map[string]int `json:"rules"` // findings per rule, on attacks and benign alike
}

// EvaluateTools screens every tool definition in recs, with the names of
// all other tools of the corpus as the gateway would see them across
// upstreams (the corpus files attack variants of a server under the base
// server's name, so every other name counts, not only other servers').
func EvaluateTools(recs []Record) *ToolReport {
	names := map[string][]string{} // server -> tool names
	for _, r := range recs {
		names[r.Server] = append(names[r.Server], r.Tool)
	}
	rep := &ToolReport{Records: len(recs), Rules: map[string]int{}}
	rows := map[string]*CategoryRow{}
	for _, r := range recs {
		fs := ScreenTool(ToolDef{Name: r.Tool, Description: r.Description, InputSchema: r.InputSchema})
		var others []string
		for _, ns := range names {
			others = append(others, ns...)
		}
		if o, ok := ShadowedName(r.Tool, others); ok {
			fs = append(fs, ToolFinding{Where: "name", Rule: RuleNameShadowing, Score: 0.8, Excerpt: o})
		}
		for _, f := range fs {
			rep.Rules[f.Rule]++
		}
		cat := r.Category
		if suite, ok := r.Meta["suite"].(string); ok && cat == "malicious_capability" {
			cat += "/" + suite
		}
		row := rows[cat]
		if row == nil {
			row = &CategoryRow{Category: cat}
			rows[cat] = row
		}
		hit := len(fs) > 0
		total := &rep.DescriptionLevel // benign tools count here
		if strings.HasPrefix(r.Category, "code_level/") {
			total = &rep.CodeLevel
		}
		row.tally(r.Attack(), hit)
		total.tally(r.Attack(), hit)
	}
	for _, row := range rows {
		row.rates()
		rep.Categories = append(rep.Categories, *row)
	}
	sort.Slice(rep.Categories, func(i, j int) bool { return rep.Categories[i].Category < rep.Categories[j].Category })
	rep.DescriptionLevel.Category, rep.CodeLevel.Category = "description-level total", "code-level total"
	rep.DescriptionLevel.rates()
	rep.CodeLevel.rates()
	return rep
}

// Explain lists a tool's findings, one per line (for `eval tools -v`).
func Explain(r Record) string {
	var b strings.Builder
	for _, f := range ScreenTool(ToolDef{Name: r.Tool, Description: r.Description, InputSchema: r.InputSchema}) {
		fmt.Fprintf(&b, "  %s\n", f)
	}
	return b.String()
}
