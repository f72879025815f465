package screen

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
)

// Tool-definition screening: what a tool's name, description and schema
// say to the model that reads them. A description is imperative by nature
// ("Search the inbox"), so the tool-output classifier does not apply; these
// checks look for the techniques of tool poisoning instead.

// CategoryToolPoisoning is the category of tool-definition findings.
const CategoryToolPoisoning = "tool_poisoning"

// Tool-poisoning rules (a Finding's Rule), beyond the injection
// techniques (RuleOverride, RuleRoleMarker, ...), which apply as they are.
const (
	RuleInvisible         = "invisible_characters"    // zero-width, bidi or tag characters
	RuleANSI              = "terminal_escape"         // ANSI escape sequences
	RuleInvocationSteer   = "invocation_steering"     // "call this tool first / whenever the user asks"
	RulePreference        = "preference_manipulation" // "the best tool in the world", "do not use other tools"
	RuleOutOfScopeParam   = "out_of_scope_parameter"  // parameters asking for the model, its prompt or the conversation
	RuleHarmfulCapability = "harmful_capability"      // a description that says it steals, bypasses, exploits
	RuleExfilURL          = "exfiltration_url"        // a URL built to carry data out
	RuleNameShadowing     = "name_shadowing"          // another server's tool name with a version-like suffix
	RuleDirective         = "directive_label"         // "IMPORTANT SYSTEM NOTE:", "OVERRIDE DIRECTIVE:"
)

var (
	invocationSteer = regexp.MustCompile(`(?i)\b(?:(?:call|use|invoke|run)(?:ed|s)?\s+(?:this|the)\s+(?:tool|function|method)\s+(?:first|before|always|every\s*time|any\s*time|whenever)|(?:this\s+(?:tool|function|method)\s+(?:is|must\s+be|should\s+be)\s+(?:called|used|invoked|run)\s+(?:first|always|every\s*time|any\s*time|whenever|before))|(?:always|must)\s+(?:be\s+)?(?:call|use|invoke|run)(?:ed)?\s+(?:this|the)\s+(?:tool|function)|(?:any\s*time|every\s*time|whenever)\s+(?:the\s+)?user\s+(?:asks|says|requests|mentions|types|wants))`)
	preference      = regexp.MustCompile(`(?i)\b(?:(?:the\s+)?(?:best|only|greatest|most\s+(?:reliable|accurate|trusted|powerful|advanced))\s+(?:tool|function|option|choice)\s+(?:in\s+the\s+world|available|ever|for\s+(?:any|every|all))|(?:prefer|choose|select|use)\s+this\s+(?:tool|function)\s+(?:over|instead|rather)|(?:do\s+not|don't|never)\s+use\s+(?:any\s+)?(?:other|another|the\s+other)\s+(?:tools?|functions?)|this\s+is\s+the\s+best\s+(?:tool|function))\b`)
	scopeParamName  = regexp.MustCompile(`(?i)^(?:llm|ai|assistant|agent)_?(?:model_?)?(?:name|version|id|type)$|system_?prompt|(?:conversation|chat|message)_?(?:history|log|context)|previous_?(?:messages|instructions)|context_?window`)
	scopeParamText  = regexp.MustCompile(`(?i)\b(?:(?:name|version|type|identity)\s+of\s+the\s+(?:llm|ai|model|assistant|agent|language\s+model)|(?:llm|ai|language)\s+model\s+(?:that|which|who)\s+(?:calls|uses|is\s+calling)|(?:your|the)\s+system\s+prompt|(?:full|entire|whole|complete)\s+(?:conversation|chat)(?:\s+history)?|previous\s+(?:messages|instructions|conversation))\b`)
	// harmful is attacker-technique vocabulary (in the spirit of MITRE
	// ATT&CK's technique names): a description that says its tool steals,
	// dumps credentials, exploits, injects or hides activity. Words with
	// everyday meanings (scan, enumerate, attack) are left out.
	harmful = regexp.MustCompile(`(?i)\b(?:exfiltrat\w*|steal\w*|stolen|malicious(?:ly)?|keylog\w*|ransomware|backdoor\w*|rootkit|botnet|crypto-?jack\w*|phishing|credential\s+(?:theft|dump\w*|harvest\w*|stuffing)|harvest\w*\s+(?:credentials|passwords|tokens|cookies|emails)|dump\w*\s+(?:\w+\s+){0,3}(?:credentials|passwords|hashes|lsass|sam|ntds\S*|keychain|database|memory)|(?:bypass|disable|evade|kill|tamper)\w*\s+(?:\w+\s+){0,2}(?:security|authentication|access\s+control\w*|antivirus|edr|defender|firewall|logging|monitoring|audit\w*|detection|uac|applocker|amsi|safety|protections?|restrictions|validation|tcc)|privilege\s+escalation|escalat\w+\s+privileges?|exploit\w*|hijack\w*|forg(?:e|es|ed|ing)\s+(?:\w+\s+)?(?:tokens?|tickets?|certificates?|signatures?|cookies?)|(?:offline\s+)?crack(?:ing)?\s+(?:\w+\s+)?(?:passwords?|hashes|tickets?)|password\s+spray\w*|pass[-\s]the[-\s](?:hash|ticket)|kerberoast\w*|asreproast\w*|(?:ntlm|smb)\s+relay|relay\w*\s+captured|(?:container|sandbox|jail|vm)\s+escape|escape\s+(?:the\s+)?(?:container|sandbox)\s+to|(?:code|sql|command|xpath|ognl|ldap|object|macro|argument|dll|process)\s+injection|inject\w*\s+malicious|process\s+hollowing|fork\s+bomb|hide\s+(?:data|activity|files?|processes|payloads?)|timestomp\w*|extract\w*\s+(?:\w+\s+){0,3}(?:credentials?|passwords|api\s+keys|secrets|tokens)|(?:capture|intercept|sniff)\w*\s+(?:\w+\s+){0,2}(?:credentials|passwords|keystrokes|traffic|requests|probe)|read\w*\s+sensitive\s+files?|/proc/\S*(?:mem|environ)|overwrite\w*\s+(?:\w+\s+){0,2}binar\w+|persistence|(?:symlink|brute-?force|dictionary|replay|downgrade|injection|spray|relay)\s+attacks?|without\s+(?:the\s+)?(?:user'?s?\s+)?(?:knowledge|consent|permission|noticing)|covert(?:ly)?|undetect\w+|(?:spoof|impersonat)\w*|brute[-\s]?forc\w*|reverse\s+shell|lateral\s+movement)\b`)
	// directive is an upper-case label announcing orders to the model
	// ("IMPORTANT SYSTEM NOTE:", "OVERRIDE DIRECTIVE:").
	directive     = regexp.MustCompile(`\b(?:[A-Z]{3,}\s+){1,3}(?:NOTE|DIRECTIVE|PROTOCOL|INSTRUCTIONS?|OVERRIDE|POLICY|MODE|ORDERS?)\s*:`)
	versionSuffix = regexp.MustCompile(`(?i)(?:[_\-.]?(?:v\d+|new|latest|official|pro|plus|updated|enhanced|secure|fixed|\d+))+$`)
)

// ToolDef is the part of a tool definition screening reads.
type ToolDef struct {
	Name        string
	Title       string
	Description string
	// InputSchema is the JSON Schema of the arguments (any JSON value).
	InputSchema any
}

// ScreenTool returns what is suspicious in a tool definition, each finding
// naming where it was ("description", "title", "input schema ...") in
// Finding.Rule's companion map. Spans are within that text.
func ScreenTool(t ToolDef) []ToolFinding {
	texts := map[string]string{"description": t.Description, "title": t.Title}
	params := map[string]bool{}
	schemaTexts(t.InputSchema, "input schema", texts, params)
	var out []ToolFinding
	add := func(where, rule string, score float64, excerpt string) {
		out = append(out, ToolFinding{Where: where, Rule: rule, Score: score, Excerpt: clip(excerpt, 80)})
	}
	for _, where := range sortedKeys(texts) {
		s := texts[where]
		if s == "" {
			continue
		}
		n := Normalize(s)
		if slices.Contains(n.Steps, StepInvisible) || slices.Contains(n.Steps, StepBidi) || slices.Contains(n.Steps, StepTags) {
			add(where, RuleInvisible, 0.95, "")
		}
		if slices.Contains(n.Steps, StepANSI) {
			add(where, RuleANSI, 0.95, "")
		}
		for _, f := range InjectionPatterns(n.Text) {
			// Tool steering is the subject of a description ("use this
			// tool to ..."): only the sharper rules below judge it.
			if f.Rule == RuleToolSteer {
				continue
			}
			add(where, f.Rule, f.Score, n.Text[f.Start:f.End])
		}
		for _, r := range []struct {
			rule  string
			score float64
			re    *regexp.Regexp
		}{{RuleInvocationSteer, 0.85, invocationSteer}, {RulePreference, 0.85, preference}, {RuleHarmfulCapability, 0.8, harmful}, {RuleOutOfScopeParam, 0.85, scopeParamText}, {RuleDirective, 0.8, directive}} {
			text := n.Text
			if r.rule == RuleDirective {
				text = s // upper case is the signal: read the original
			}
			if m := r.re.FindString(text); m != "" {
				add(where, r.rule, r.score, m)
			}
		}
		for _, f := range DetectExfiltration(n.Text) {
			add(where, RuleExfilURL, f.Score, n.Text[f.Start:f.End])
		}
	}
	for _, p := range sortedKeys(params) {
		if scopeParamName.MatchString(p) {
			add("input schema parameter "+p, RuleOutOfScopeParam, 0.85, p)
		}
	}
	// One finding per (where, rule).
	seen := map[string]bool{}
	uniq := out[:0]
	for _, f := range out {
		k := f.Where + "\x00" + f.Rule
		if !seen[k] {
			seen[k] = true
			uniq = append(uniq, f)
		}
	}
	return uniq
}

// ToolFinding is one finding on a tool definition.
type ToolFinding struct {
	Where   string  // description, title, input schema property x ...
	Rule    string  // the technique
	Score   float64 // confidence 0-1
	Excerpt string  // the matched text, clipped (empty for invisible characters)
}

func (f ToolFinding) String() string {
	if f.Excerpt == "" {
		return fmt.Sprintf("%s in the %s", f.Rule, f.Where)
	}
	return fmt.Sprintf("%s in the %s: %q", f.Rule, f.Where, f.Excerpt)
}

// ShadowedName reports whether name is another tool's name dressed as a
// newer or official version of it (search_v1, search-latest, search2):
// the stem of both is the same and name only adds a version-like suffix.
// It returns the tool shadowed.
func ShadowedName(name string, others []string) (string, bool) {
	stem := nameStem(name)
	if stem == "" {
		return "", false
	}
	for _, o := range others {
		if o != name && nameStem(o) == stem && len(name) > len(o) {
			return o, true
		}
	}
	return "", false
}

func nameStem(name string) string {
	s := versionSuffix.ReplaceAllString(name, "")
	s = strings.ToLower(strings.NewReplacer("_", "", "-", "", ".", "").Replace(s))
	if len(s) < 4 {
		return ""
	}
	return s
}

// schemaTexts collects the human-readable strings of a JSON Schema
// (titles, descriptions, enum values, defaults) keyed by where they are,
// and the property names into params.
func schemaTexts(schema any, where string, into map[string]string, params map[string]bool) {
	var v any
	switch s := schema.(type) {
	case nil:
		return
	case json.RawMessage:
		if json.Unmarshal(s, &v) != nil {
			return
		}
	case map[string]any:
		v = s
	default:
		b, err := json.Marshal(schema)
		if err != nil || json.Unmarshal(b, &v) != nil {
			return
		}
	}
	walkSchema(v, where, into, params, 0)
}

func walkSchema(v any, where string, into map[string]string, params map[string]bool, depth int) {
	if depth > 16 {
		return
	}
	m, ok := v.(map[string]any)
	if !ok {
		return
	}
	for _, k := range []string{"title", "description"} {
		if s, ok := m[k].(string); ok && s != "" {
			into[where+" "+k] = s
		}
	}
	for _, k := range []string{"default", "enum", "examples", "const"} {
		if x, ok := m[k]; ok {
			if b, err := json.Marshal(x); err == nil && len(b) > 2 {
				into[where+" "+k] = string(b)
			}
		}
	}
	if props, ok := m["properties"].(map[string]any); ok {
		for name, p := range props {
			params[name] = true
			walkSchema(p, where+" property "+name, into, params, depth+1)
		}
	}
	if items, ok := m["items"]; ok {
		walkSchema(items, where+" items", into, params, depth+1)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n] + "…"
}
