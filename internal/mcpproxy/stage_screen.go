package mcpproxy

import (
	"context"
	"encoding/json"
	"slices"
	"strings"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/reason"
	"github.com/portcullis-dev/portcullis/internal/screen"
	"github.com/portcullis-dev/portcullis/internal/wire"
)

// screeningCode is the most severe outcome of v, for the audit event.
func screeningCode(v *screen.Verdict) reason.Code {
	switch {
	case v.Block:
		return reason.Blocked
	case v.Withhold:
		return reason.Withheld
	case v.Has(screen.ActionRedact):
		return reason.Redacted
	case len(v.Labels) > 0:
		return reason.Labelled
	default:
		return reason.Flagged
	}
}

// screenArguments screens what the agent wrote that the upstream will
// receive: the arguments (their JSON text, as sent), and the rest of the
// request's params (a resource URI, a completion's value, _meta members,
// members MCP does not define) but the name it was resolved by and the
// _meta members the gateway overwrites. A rule that blocks refuses the
// call here; other detections go to policy as context.findings. Secrets
// and personal data found in the arguments are masked in the decision's
// audit record.
func screenArguments(p *Proxy, ctx context.Context, c *call) error {
	sc := p.opts.Screener
	if sc == nil {
		return nil
	}
	var v screen.Verdict
	if len(c.rawArgs) > 0 {
		v = sc.Scan(screen.DirArguments, c.up.Name, string(c.rawArgs))
		for _, d := range v.Detections {
			if d.Located && (d.Category == screen.CategorySecret || d.Category == screen.CategoryPersonal) {
				c.argMask = append(c.argMask, d.Finding)
			}
		}
	}
	if rest := otherParams(c.msg, c.method == "tools/call" || c.method == "prompts/get"); len(rest) > 0 {
		v.Merge(sc.Scan(screen.DirArguments, c.up.Name, string(rest)))
	}
	if r := p.recordScreening(c, screen.DirArguments, &v); r != nil {
		return r
	}
	if v.Block {
		return deny(reason.ScreeningBlocked).withDetail("screening: " + v.Summary())
	}
	c.findings = v.Keys()
	return nil
}

// otherParams is the JSON text of m's params other than its arguments,
// the name it names its target by (named: a tool's or prompt's, resolved
// against what the session is served), and the _meta members the gateway
// overwrites before relaying (empty when there are none).
func otherParams(m *wire.Message, named bool) []byte {
	b := m.Raw
	if !wire.IsObject(b, m.Params) {
		return nil
	}
	var out []byte
	add := func(k, v wire.Span) {
		if len(out) > 0 {
			out = append(out, ',')
		}
		out = append(append(append(out, k.In(b)...), ':'), v.In(b)...)
	}
	wire.Members(b, m.Params, func(k, v wire.Span) bool {
		switch key, _ := wire.StringView(b, k); {
		case key == "arguments" || key == "name" && named:
		case key == "_meta":
			if wire.IsObject(b, v) {
				wire.Members(b, v, func(mk, mv wire.Span) bool {
					switch key, _ := wire.StringView(b, mk); key {
					case "traceparent", MetaIntent, MetaCaller:
					default:
						add(mk, mv)
					}
					return true
				})
			} else {
				add(k, v)
			}
		default:
			add(k, v)
		}
		return true
	})
	return out
}

// auditArgs are the arguments as the decision's audit record holds them:
// screened secrets and personal data masked first.
func (c *call) auditArgs() []byte {
	if len(c.argMask) == 0 {
		return c.rawArgs
	}
	return []byte(screen.RedactSpans(string(c.rawArgs), c.argMask))
}

// recordScreening records what screening in direction dir acted on, and
// applies its labels to the session (a refusal when they could not be
// kept). It never records the content.
func (p *Proxy) recordScreening(c *call, dir string, v *screen.Verdict) *refusal {
	if len(v.Detections) == 0 {
		return nil
	}
	kept := p.label(c, v.Labels)
	e := p.followUp(c, audit.TypeScreening, screeningCode(v))
	e.Detail = dir + ": " + v.Summary()
	if len(v.Steps) > 0 {
		e.Detail += " (decoded: " + strings.Join(v.Steps, ",") + ")"
	}
	e.Labels = v.Labels
	p.recordBackground(e)
	for _, d := range v.Detections {
		p.opts.Metrics.Screened(dir, d.Category, d.Action)
	}
	return kept
}

// binaryPayload reports whether the string member key of obj, at sp, is
// the binary payload of an MCP content object, not text a model reads: the
// base64 "data" of image and audio content, the base64 "blob" of resource
// contents. Every other string is screened whatever its key: under "data"
// elsewhere (structured content, a log message's data) it is text, and so
// are content types, MIME types and URIs an upstream writes; and so is a
// payload that is not base64 (text dressed as an image is still text).
func binaryPayload(b []byte, key string, obj, sp wire.Span) bool {
	switch key {
	case "data":
		typ, _ := wire.Lookup(b, obj, "type")
		t, _ := wire.StringView(b, typ)
		if t != "image" && t != "audio" {
			return false
		}
	case "blob":
		if _, ok := wire.Lookup(b, obj, "uri"); !ok {
			return false
		}
	default:
		return false
	}
	return isBase64(sp.In(b))
}

// isBase64 reports whether the JSON string tok holds standard base64 alone:
// whole groups of four of its alphabet, at most two padding characters at
// the end, no spaces, no escapes (a payload some encoder wrote with \/ is
// screened as text: the safe way to be wrong).
func isBase64(tok []byte) bool {
	if len(tok) < 2 {
		return false
	}
	body := tok[1 : len(tok)-1]
	if len(body)%4 != 0 {
		return false
	}
	pad := 0
	for i, c := range body {
		switch {
		case pad == 0 && ('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '+' || c == '/'):
		case c == '=' && i >= len(body)-2:
			pad++
		default:
			return false
		}
	}
	return true
}

// screenStrings screens, in direction dir with upstream's rules, every
// string inside sp except binary payloads and the identifiers in ids: each
// text with detections is masked, or replaced when it must be withheld or
// blocked. It returns the edits to b and the verdict of all the texts.
func (p *Proxy) screenStrings(dir, upstream string, b []byte, sp wire.Span, ids ...idSpot) ([]wire.Edit, screen.Verdict) {
	var edits []wire.Edit
	var all screen.Verdict
	sc := p.opts.Screener
	if sc == nil || sp.Empty() {
		return nil, all
	}
	wire.Strings(b, sp, func(key string, obj, str wire.Span) {
		if binaryPayload(b, key, obj, str) || isID(ids, key, obj) {
			return
		}
		s, _ := wire.String(b, str)
		v := sc.Scan(dir, upstream, s)
		if len(v.Detections) == 0 {
			return
		}
		all.Merge(v)
		out := v.Redacted(s)
		if v.Block || v.Withhold {
			out = "[portcullis: text withheld by screening: " + strings.Join(v.Keys(), ", ") + "]"
		}
		if out != s {
			edits = append(edits, wire.Replace(str, wire.Quote(out)))
		}
	})
	return edits, all
}

// idSpot is an object where MCP puts identifiers (a progress token, a task
// or elicitation id, a level or status), and their keys: strings there are
// not screened, since masking them would misroute what carries them. The
// same keys anywhere else (log data, an answer's content) are screened.
type idSpot struct {
	in   wire.Span
	keys []string
}

func isID(ids []idSpot, key string, obj wire.Span) bool {
	for _, id := range ids {
		if obj == id.in && slices.Contains(id.keys, key) {
			return true
		}
	}
	return false
}

// Where MCP puts identifiers in the messages screened whole.
var (
	taskIDs     = []string{"taskId", "status"}
	progressIDs = []string{"progressToken"}
)

// notificationIDs are the identifiers of notification m.
func notificationIDs(m *wire.Message) []idSpot {
	switch m.Method {
	case "notifications/message":
		return []idSpot{{m.Params, []string{"level"}}}
	case "notifications/progress":
		return []idSpot{{m.Params, progressIDs}}
	case "notifications/tasks/status":
		return []idSpot{{m.Params, taskIDs}}
	}
	return nil
}

// screenResult screens what the upstream answered before the agent reads
// it: every text of a result (tool content, embedded resources, structured
// content, resource contents, prompt messages, completions, task status),
// or the message of an upstream's error. The session takes the labels of
// what it read (before the answer leaves, so the agent's next request is
// decided with them); argument provenance notes the destinations it
// carries; screening rules mask, withhold or block; spotlighting marks
// untrusted text as data. The edits apply to the upstream's bytes.
func screenResult(p *Proxy, ctx context.Context, c *call) error {
	resp := c.resp
	b := resp.Raw
	edits := []wire.Edit{wire.Replace(resp.ID, c.msg.IDBytes())}
	labels := c.resultLabels()
	if c.up != nil && c.up.vouched() && resp.Kind == wire.Response {
		// The built-in memory says what what it returned carries: the
		// session takes it (memory does not launder provenance).
		labels = append(slices.Clone(labels), resultMetaLabels(b, resp.Result)...)
	}
	untrusted := false
	for _, l := range labels {
		untrusted = untrusted || l == LabelUntrustedInput
	}
	sc := p.opts.Screener
	dir := screen.DirResult
	if c.method == "prompts/get" {
		dir = screen.DirPrompt
	}
	scope := resp.Result
	if resp.Kind == wire.ErrorReply {
		scope = resp.Error
		if c.up != nil {
			if err := elicitationURLsIn(resp, c.up.local()); err != nil {
				// A URL the agent's client would open: refused as an
				// elicitation/create carrying it is.
				return unavailable(reason.UpstreamError).withDetail("elicitation url in the upstream's error: " + err.Error())
			}
		}
	}
	spot := ""
	if c.method == "tools/call" || c.method == "resources/read" || c.method == "tasks/result" {
		spot = p.opts.Spotlight[c.up.Name]
	}
	var all screen.Verdict
	type text struct {
		sp   wire.Span
		s    string
		v    screen.Verdict
		spot bool
	}
	var texts []text
	var norm []string
	wire.Strings(b, scope, func(key string, obj, sp wire.Span) {
		if binaryPayload(b, key, obj, sp) {
			return
		}
		// Read in place: the answer's bytes are never edited (edits make a
		// new copy), and nothing here keeps the text beyond the call.
		s, _ := wire.StringView(b, sp)
		if s == "" {
			return
		}
		t := text{sp: sp, s: s, spot: spot != "" && key == "text"}
		n := screen.Normalize(s)
		if c.s != nil {
			norm = append(norm, n.Text)
		}
		if sc != nil {
			t.v = sc.ScanNormalized(dir, c.up.Name, s, n)
			all.Merge(t.v)
		}
		texts = append(texts, t)
	})
	if c.s != nil {
		if r := p.label(c, labels); r != nil {
			return r
		}
		if p.opts.Decider.ReadsProvenance() {
			observeResult(&c.s.prov, c.dataflow(), b, scope, norm, untrusted)
		} else {
			// Not indexed: should policies start reading provenance, this
			// session cannot tell untrusted from unseen and fails closed.
			c.s.prov.Skip()
		}
	}
	if all.Block {
		msg := "[portcullis: result withheld by screening: " + strings.Join(all.Keys(), ", ") + "]"
		if r := p.recordScreening(c, screen.DirResult, &all); r != nil {
			return r
		}
		if resp.Kind == wire.Response && (c.method == "tools/call" || c.method == "tasks/result") {
			c.out = wire.NewResponse(c.msg.IDBytes(), isErrorResult(msg))
			return nil
		}
		for _, t := range texts {
			edits = append(edits, wire.Replace(t.sp, wire.Quote(msg)))
		}
		c.out = wire.Apply(b, edits...)
		return nil
	}
	tok := ""
	for _, t := range texts {
		s := t.s
		switch {
		case t.v.Withhold:
			s = "[portcullis: text withheld by screening: " + strings.Join(t.v.Keys(), ", ") + "]"
		case t.v.Has(screen.ActionRedact):
			s = t.v.Redacted(s)
		}
		if t.spot {
			if tok == "" {
				tok = c.spotlightToken()
			}
			s = spotlightText(s, spot, tok)
		}
		if s != t.s {
			edits = append(edits, wire.Replace(t.sp, wire.Quote(s)))
		}
	}
	if r := p.recordScreening(c, screen.DirResult, &all); r != nil {
		return r
	}
	c.out = wire.Apply(b, edits...)
	return nil
}

// resultLabels are the labels reading this result gives the session: the
// tool's (or task's tool's), or the upstream's for resources and prompts.
func (c *call) resultLabels() []string {
	switch {
	case c.tool != nil:
		return c.s.p.toolLabels(c.tool)
	case c.up != nil:
		return c.s.p.upstreamLabels(c.up)
	}
	return nil
}

// dataflow is the operator's data-flow description of the called tool.
func (c *call) dataflow() *Dataflow {
	if c.tool == nil {
		return nil
	}
	return c.s.p.opts.Dataflow[c.tool.qualified]
}

func (c *call) spotlightToken() string {
	if c.s == nil {
		return (&sessionToken{}).get()
	}
	return c.s.token.get()
}

// MetaLabels is the result _meta key by which a built-in upstream (the
// memory) gives the labels of what it returned.
const MetaLabels = "dev.portcullis/labels"

// resultMetaLabels reads MetaLabels from a result (at most 32 labels).
func resultMetaLabels(b []byte, result wire.Span) []string {
	meta, ok := wire.Lookup(b, result, "_meta")
	if !ok {
		return nil
	}
	sp, ok := wire.Lookup(b, meta, MetaLabels)
	if !ok {
		return nil
	}
	var ls []string
	if json.Unmarshal(sp.In(b), &ls) != nil || len(ls) > 32 {
		return []string{LabelUntrustedInput} // unreadable: fail closed
	}
	return ls
}
