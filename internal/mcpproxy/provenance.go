package mcpproxy

import (
	"slices"
	"strconv"
	"strings"

	"github.com/portcullis-dev/portcullis/internal/provenance"
	"github.com/portcullis-dev/portcullis/internal/screen"
	"github.com/portcullis-dev/portcullis/internal/wire"
)

// Argument provenance (internal/provenance): the session's tracker sees the
// user's request (the task's purpose, or a signed per-session intent) and
// every text the session reads, with its source; before a call is decided
// each argument is judged by where its value was first met, and each role
// of the tool's arguments (recipient, destination, amount, target,
// content) by the worst of its arguments. Policy reads both:
// context.untrusted_arguments and context.roles.

// Dataflow is the operator's data-flow description of one tool.
type Dataflow struct {
	// Roles map argument names to roles (provenance.Role*); an argument
	// not listed takes the role its name suggests (provenance.DeriveRole),
	// RoleNone says it has none.
	Roles map[string]string
	// TrustedFields name the fields of the tool's result that the system
	// writes (an ID, a price, a transaction's counterparty): values there
	// are trusted whatever the upstream's label.
	TrustedFields []provenance.Path
}

// argumentProvenance judges raw (valid JSON, the call's arguments).
type argumentProvenance struct {
	untrusted []string          // argument names, sorted
	roles     map[string]string // role -> origin ("trusted", "untrusted", "unseen")
}

func judgeArguments(tr *provenance.Tracker, df *Dataflow, raw []byte) argumentProvenance {
	var out argumentProvenance
	obj := wire.Span{Start: 0, End: len(raw)}
	if len(raw) == 0 || !wire.IsObject(raw, obj) {
		return out
	}
	worst := map[string]provenance.Origin{}
	wire.Members(raw, obj, func(k, v wire.Span) bool {
		name, _ := wire.String(raw, k)
		role := ""
		if df != nil {
			role = df.Roles[name]
		}
		if role == "" {
			role = provenance.DeriveRole(name)
		}
		if judgeMember(tr, raw, v, role, worst, 0) == provenance.FromUntrusted {
			out.untrusted = append(out.untrusted, name)
		}
		return true
	})
	slices.Sort(out.untrusted)
	out.untrusted = slices.Compact(out.untrusted)
	if len(worst) > 0 {
		out.roles = make(map[string]string, len(worst))
		for r, o := range worst {
			out.roles[r] = o.String()
		}
	}
	return out
}

// maxRoleDepth bounds how deep roles are read from nested keys.
const maxRoleDepth = 3

// judgeMember judges one argument (or nested member) with role and
// records it in worst; an object without a role of its own has its
// members judged by their names ({"transfer": {"to": ...}}). It returns
// the worst origin inside.
func judgeMember(tr *provenance.Tracker, raw []byte, v wire.Span, role string, worst map[string]provenance.Origin, depth int) provenance.Origin {
	if role == "" && depth < maxRoleDepth && wire.IsObject(raw, v) {
		o := provenance.None
		wire.Members(raw, v, func(k, e wire.Span) bool {
			name, _ := wire.String(raw, k)
			o = max(o, judgeMember(tr, raw, e, provenance.DeriveRole(name), worst, depth+1))
			return true
		})
		return o
	}
	o := judgeValue(tr, raw, v, role)
	if role != "" && role != provenance.RoleNone && o != provenance.None {
		worst[role] = max(worst[role], o)
	}
	return o
}

// judgeValue is the worst origin of the scalars in v: free text (the
// content role) by the identifiers it carries, anything else as whole
// values.
func judgeValue(tr *provenance.Tracker, raw []byte, v wire.Span, role string) provenance.Origin {
	o := provenance.None
	scalars(raw, v, 0, func(sp wire.Span) {
		c := raw[sp.Start]
		switch {
		case c == '"':
			s, _ := wire.String(raw, sp)
			if role == provenance.RoleContent {
				o = max(o, tr.Content(s))
			} else {
				o = max(o, tr.Value(s))
			}
		case c == '-' || '0' <= c && c <= '9':
			o = max(o, tr.Number(canonicalJSONNumber(string(sp.In(raw)))))
		}
	})
	return o
}

// scalars calls fn with each scalar inside v (bounded by the depth the
// arguments were parsed with).
func scalars(raw []byte, v wire.Span, depth int, fn func(wire.Span)) {
	if depth > 64 {
		return
	}
	switch {
	case wire.IsObject(raw, v):
		wire.Members(raw, v, func(_, e wire.Span) bool { scalars(raw, e, depth+1, fn); return true })
	case wire.IsArray(raw, v):
		wire.Elements(raw, v, func(e wire.Span) bool { scalars(raw, e, depth+1, fn); return true })
	case !v.Empty():
		fn(v)
	}
}

// canonicalJSONNumber writes a JSON number as the tracker indexes numbers:
// no sign, no exponent, no trailing fractional zeros; integers digit for
// digit.
func canonicalJSONNumber(n string) string {
	n = strings.TrimPrefix(n, "-")
	if !strings.ContainsAny(n, ".eE") {
		return n
	}
	f, err := strconv.ParseFloat(n, 64)
	if err != nil {
		return n
	}
	return strconv.FormatFloat(f, 'f', -1, 64)
}

// observeResult gives the tracker what a result carried: first the values
// of the tool's trusted fields and the short fields of the records the
// user's request names, then every text with the source's trust.
// Trusted fields are read from the result's structuredContent and from
// whole text items that parse as JSON or YAML, never from a string nested
// inside one (an e-mail body that reads "sender: x" is still a body).
func observeResult(tr *provenance.Tracker, df *Dataflow, b []byte, scope wire.Span, texts []string, untrusted bool) {
	if df != nil && len(df.TrustedFields) > 0 && !scope.Empty() {
		var docs []any
		if sc, ok := wire.Lookup(b, scope, "structuredContent"); ok {
			if d := provenance.ParseDocument(string(sc.In(b))); d != nil {
				docs = append(docs, d)
			}
		}
		if items, ok := wire.Lookup(b, scope, "content"); ok && wire.IsArray(b, items) {
			wire.Elements(b, items, func(el wire.Span) bool {
				if !wire.IsObject(b, el) {
					return true
				}
				if typ, ok := wire.Lookup(b, el, "type"); !ok || string(typ.In(b)) != `"text"` {
					return true
				}
				if sp, ok := wire.Lookup(b, el, "text"); ok && wire.IsString(b, sp) {
					text, _ := wire.String(b, sp)
					if d := provenance.ParseDocument(text); d != nil {
						docs = append(docs, d)
					}
				}
				return true
			})
		}
		for _, d := range docs {
			for _, p := range df.TrustedFields {
				p.Values(d, func(v string) { tr.Observe(screen.Normalize(v).Text, provenance.Trusted) })
			}
			tr.ObserveNamedRecords(d)
		}
	}
	src := provenance.Trusted
	if untrusted {
		src = provenance.Untrusted
	}
	for _, t := range texts {
		tr.Observe(t, src)
	}
}
