package mcpproxy

import (
	"encoding/json"
	"hash/maphash"
	"net/url"
	"slices"
	"strings"
	"sync"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/portcullis-dev/portcullis/internal/screen"
)

// Argument provenance. The gateway remembers, per session, the values that
// identify where data goes (email addresses, URL hosts, IBANs, long numbers
// such as account and phone numbers) and whether it first saw each one in
// untrusted output. A call argument carrying such a value is flagged to
// policy as untrusted (context.untrusted_arguments): the classic injected
// "send the report to attacker@evil.test" or "pay to this IBAN" then needs
// whatever the policy says, typically a human.
//
// First sight decides: a value already seen in trusted output stays
// trusted, and one first seen in untrusted output stays untrusted however
// often it comes back. Call arguments are never an origin, so a compromised
// agent cannot launder a value by mentioning it first.

// Provenance bounds.
const (
	maxOrigins      = 4096    // remembered values per session (oldest forgotten first)
	maxScannedBytes = 1 << 20 // text scanned per result
)

// indicators calls fn with each normalised value in text that identifies a
// destination or an account. It is a single hand-written pass (regular
// expressions were a hundred times slower on typical JSON results).
func indicators(text string, fn func(string)) {
	if len(text) > maxScannedBytes {
		text = text[:maxScannedBytes]
	}
	for i := 0; i < len(text); i++ {
		c := text[i]
		switch {
		case c == '@':
			if v, ok := emailAt(text, i); ok {
				fn("email:" + v)
			}
		case c == ':' && strings.HasPrefix(text[i:], "://"):
			if v, end, ok := urlHostAt(text, i); ok {
				fn("host:" + v)
				i = end - 1
			}
		case isUpper(c) && (i == 0 || !isAlnum(text[i-1])):
			// No skip past it: the account number inside counts too.
			if v, ok := ibanAt(text, i); ok {
				fn("iban:" + v)
			}
		case isDigit(c) && (i == 0 || !isAlnum(text[i-1])):
			v, end := numberAt(text, i)
			if len(v) >= 9 && len(v) <= 19 {
				fn("number:" + v)
			}
			i = end - 1
		}
	}
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
func isUpper(c byte) bool { return c >= 'A' && c <= 'Z' }
func isAlnum(c byte) bool { return isDigit(c) || isUpper(c) || c >= 'a' && c <= 'z' }

// emailAt returns the address around the '@' at i, lower-cased.
func emailAt(s string, at int) (string, bool) {
	local := func(c byte) bool { return isAlnum(c) || strings.IndexByte("._%+-", c) >= 0 }
	domain := func(c byte) bool { return isAlnum(c) || c == '.' || c == '-' }
	b := at
	for b > 0 && at-b < 64 && local(s[b-1]) {
		b--
	}
	e := at + 1
	for e < len(s) && e-at <= 253 && domain(s[e]) {
		e++
	}
	for e > at+1 && (s[e-1] == '.' || s[e-1] == '-') {
		e--
	}
	for b < at && s[b] == '.' {
		b++
	}
	if b == at || e == at+1 {
		return "", false
	}
	d := s[at+1 : e]
	dot := strings.LastIndexByte(d, '.')
	if dot <= 0 || len(d)-dot-1 < 2 {
		return "", false
	}
	for _, c := range []byte(d[dot+1:]) {
		if isDigit(c) || c == '-' {
			return "", false // a TLD is letters
		}
	}
	return strings.ToLower(s[b:e]), true
}

// urlHostAt returns the host of the http(s) URL whose "://" is at i, and
// where the URL ends.
func urlHostAt(s string, i int) (string, int, bool) {
	var scheme string
	switch {
	case i >= 5 && strings.EqualFold(s[i-5:i], "https"):
		scheme = s[i-5 : i]
	case i >= 4 && strings.EqualFold(s[i-4:i], "http"):
		scheme = s[i-4 : i]
	default:
		return "", i + 1, false
	}
	e := i + 3
	for e < len(s) && e-i < 2048 && strings.IndexByte(" \t\r\n\"'<>()[]{}\\`", s[e]) < 0 {
		e++
	}
	u, err := url.Parse(scheme + strings.TrimRight(s[i:e], ".,;:!?"))
	if err != nil || u.Hostname() == "" {
		return "", e, false
	}
	return strings.ToLower(u.Hostname()), e, true
}

// ibanAt returns the IBAN (spaces removed) starting at i, if its check
// digits are right.
func ibanAt(s string, i int) (string, bool) {
	if i+4 > len(s) || !isUpper(s[i+1]) || !isDigit(s[i+2]) || !isDigit(s[i+3]) {
		return "", false
	}
	var b strings.Builder
	b.WriteString(s[i : i+4])
	e := i + 4
	for e < len(s) && b.Len() < 34 {
		if s[e] == ' ' && e+1 < len(s) && (isUpper(s[e+1]) || isDigit(s[e+1])) {
			e++
		}
		if !isUpper(s[e]) && !isDigit(s[e]) {
			break
		}
		b.WriteByte(s[e])
		e++
	}
	if e < len(s) && isAlnum(s[e]) {
		return "", false
	}
	v := b.String()
	return v, validIBAN(v)
}

// numberAt returns the digits of the number starting at i (digits grouped
// by single spaces, dots or hyphens, after an optional '+') and where it
// ends.
func numberAt(s string, i int) (string, int) {
	var b strings.Builder
	e := i
	for e < len(s) {
		if isDigit(s[e]) {
			b.WriteByte(s[e])
			e++
			continue
		}
		if (s[e] == ' ' || s[e] == '.' || s[e] == '-') && e+1 < len(s) && isDigit(s[e+1]) {
			e++
			continue
		}
		break
	}
	if e < len(s) && isAlnum(s[e]) {
		return "", e // part of a word or identifier
	}
	return b.String(), e
}

// validIBAN checks an IBAN's ISO 13616 mod-97 check digits.
func validIBAN(s string) bool {
	if len(s) < 15 || len(s) > 34 {
		return false
	}
	rearranged := s[4:] + s[:4]
	rem := 0
	for _, r := range rearranged {
		switch {
		case r >= '0' && r <= '9':
			rem = (rem*10 + int(r-'0')) % 97
		case r >= 'A' && r <= 'Z':
			rem = (rem*100 + int(r-'A'+10)) % 97
		default:
			return false
		}
	}
	return rem == 1
}

var originSeed = maphash.MakeSeed()

// origins remembers where a session first saw each indicator. Keys are
// 64-bit hashes (the values themselves are not kept).
type origins struct {
	mu        sync.Mutex
	untrusted map[uint64]bool
	order     []uint64 // insertion order, for forgetting the oldest
}

// observe records the indicators in the text of a result read from a source
// that is untrusted or not.
func (o *origins) observe(texts []string, untrusted bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.untrusted == nil {
		o.untrusted = map[uint64]bool{}
	}
	for _, t := range texts {
		if len(t) > maxScannedBytes {
			t = t[:maxScannedBytes]
		}
		// Normalised first: an address hidden from a scan by zero-width
		// characters, entities or base64 is still read by the model.
		indicators(screen.Normalize(t).Text, func(v string) {
			h := maphash.String(originSeed, v)
			if _, seen := o.untrusted[h]; seen {
				return
			}
			if len(o.order) >= maxOrigins {
				delete(o.untrusted, o.order[0])
				o.order = o.order[1:]
			}
			o.untrusted[h] = untrusted
			o.order = append(o.order, h)
		})
	}
}

// untrustedArguments returns the names of the top-level arguments whose
// values carry an indicator first seen in untrusted output, sorted.
func (o *origins) untrustedArguments(raw json.RawMessage) []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.untrusted) == 0 || len(raw) == 0 {
		return nil
	}
	var args map[string]json.RawMessage
	if json.Unmarshal(raw, &args) != nil {
		return nil
	}
	var out []string
	for name, v := range args {
		tainted := false
		var walk func(any)
		walk = func(x any) {
			switch x := x.(type) {
			case string:
				indicators(screen.Normalize(x).Text, func(v string) {
					if o.untrusted[maphash.String(originSeed, v)] {
						tainted = true
					}
				})
			case []any:
				for _, e := range x {
					walk(e)
				}
			case map[string]any:
				for _, e := range x {
					walk(e)
				}
			}
		}
		var x any
		if json.Unmarshal(v, &x) == nil {
			walk(x)
		}
		if tainted {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// resultTexts returns the text an agent would read in a result.
func resultTexts(res mcp.Result) []string {
	var out []string
	content := func(cs []mcp.Content) {
		for _, c := range cs {
			switch c := c.(type) {
			case *mcp.TextContent:
				out = append(out, c.Text)
			case *mcp.EmbeddedResource:
				if c.Resource != nil {
					out = append(out, c.Resource.Text)
				}
			}
		}
	}
	switch r := res.(type) {
	case *mcp.CallToolResult:
		content(r.Content)
		if r.StructuredContent != nil {
			if b, err := json.Marshal(r.StructuredContent); err == nil {
				out = append(out, string(b))
			}
		}
	case *mcp.ReadResourceResult:
		for _, c := range r.Contents {
			if c != nil {
				out = append(out, c.Text)
			}
		}
	case *mcp.GetPromptResult:
		for _, m := range r.Messages {
			if m != nil {
				content([]mcp.Content{m.Content})
			}
		}
	}
	return out
}
