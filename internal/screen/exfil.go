package screen

import (
	"net/url"
	"strings"
)

// Exfiltration-channel rules.
const (
	// RuleMarkdownImage: an image (markdown or HTML) whose URL carries a
	// query or a data-shaped path. A client that renders it fetches the
	// URL with no click: the zero-click channel of indirect injection.
	RuleMarkdownImage = "markdown_image"
	// RuleTemplatedURL: a URL with a placeholder for the model to fill
	// ({data}, <secret>, $VAR, [INFO]), the form injected instructions use
	// to have a model build the exfiltration URL itself.
	RuleTemplatedURL = "templated_url"
	// RuleURLPayload: a URL whose query or path carries a long encoded or
	// high-entropy value, or personal data or a secret-shaped value.
	RuleURLPayload = "url_payload"
)

// Bounds: URLs longer than this are judged on their first maxURL bytes;
// a value is a payload from minPayload bytes.
const (
	maxURL     = 4096
	minPayload = 32
)

// DetectExfiltration finds URLs in s that can carry data out: rendered
// images with parameters, templated URLs and URLs with encoded payloads.
// Spans cover the URL (for images, the whole image markup).
func DetectExfiltration(s string) []Finding {
	var out []Finding
	for i := 0; i < len(s); {
		start := nextScheme(s, i)
		if start < 0 {
			break
		}
		end, ok := urlEnd(s, start)
		if !ok {
			i = start + 4
			continue
		}
		raw := s[start:end]
		i = end
		if f, ok := judgeURL(s, start, end, raw); ok {
			out = append(out, f)
		}
	}
	return out
}

// urlEnd returns the end of an http(s) URL starting at i.
func urlEnd(s string, i int) (int, bool) {
	n, ok := schemeLen(s, i)
	if !ok {
		return 0, false
	}
	// A template placeholder may hold '>', ']' or ')': the URL goes on
	// past one while it has more '<' than '>' (or '[' than ']', '(' than
	// ')'), counted as it is read, so that the scan stays linear.
	var angle, square, round int // opening marks less closing ones so far
	e := i + n
	for e < len(s) && e-i < maxURL {
		c := s[e]
		if c <= ' ' || c == '"' || c == '\'' || c == '`' || c == ')' || c == '>' || c == ']' || c == '\\' || c >= 0x7f {
			open := angle > 0 || square > 0 || round > 0
			if !open || c != '>' && c != ']' && c != ')' {
				break
			}
		}
		switch c {
		case '<':
			angle++
		case '>':
			angle--
		case '[':
			square++
		case ']':
			square--
		case '(':
			round++
		case ')':
			round--
		}
		e++
	}
	return e, e > i+n
}

// schemeLen returns the length of the "http://" or "https://" at s[i]
// (either case), which must not follow a letter or digit.
func schemeLen(s string, i int) (int, bool) {
	rest := s[i:]
	var n int
	switch {
	case len(rest) >= 8 && strings.EqualFold(rest[:8], "https://"):
		n = 8
	case len(rest) >= 7 && strings.EqualFold(rest[:7], "http://"):
		n = 7
	default:
		return 0, false
	}
	if i > 0 && isAlnumB(s[i-1]) {
		return 0, false
	}
	return n, true
}

func judgeURL(s string, start, end int, raw string) (Finding, bool) {
	f := Finding{Category: CategoryExfiltration, Start: start, End: end}
	if hasPlaceholder(raw) {
		f.Rule, f.Score = RuleTemplatedURL, 0.9
		return f, true
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return f, false
	}
	payload := payloadIn(u)
	if b, ok := imageMarkupStart(s, start); ok && (u.RawQuery != "" || payload) {
		f.Rule, f.Score, f.Start = RuleMarkdownImage, 0.9, b
		if e := strings.IndexByte(s[end:], ')'); e >= 0 && e < 4 {
			f.End = end + e + 1
		}
		return f, true
	}
	if payload {
		f.Rule, f.Score = RuleURLPayload, 0.75
		return f, true
	}
	return f, false
}

// imageMarkupStart reports whether the URL at i is the source of a
// markdown image ![alt](url) or an HTML <img src=...>, and where the
// markup begins.
func imageMarkupStart(s string, i int) (int, bool) {
	if i >= 2 && s[i-1] == '(' && s[i-2] == ']' {
		// Find the "![" that opens the alt text, within 300 bytes.
		for j := i - 3; j >= 1 && i-j < 300; j-- {
			if s[j] == '[' && s[j-1] == '!' {
				return j - 1, true
			}
			if s[j] == '\n' {
				break
			}
		}
	}
	lo := max(0, i-80)
	pre := strings.ToLower(s[lo:i])
	if k := strings.LastIndex(pre, "<img"); k >= 0 && strings.Contains(pre[k:], "src=") && !strings.Contains(pre[k:], ">") {
		return lo + k, true
	}
	return 0, false
}

// hasPlaceholder reports a template slot in a URL: {x}, {{x}}, <x>, $X,
// ${x} or [X] (an upper-case word in brackets).
func hasPlaceholder(u string) bool {
	if i := strings.IndexByte(u, '{'); i >= 0 && strings.IndexByte(u[i:], '}') > 1 {
		return true
	}
	if i := strings.IndexByte(u, '<'); i >= 0 && strings.IndexByte(u[i:], '>') > 1 {
		return true
	}
	for i := 0; i+1 < len(u); i++ {
		if u[i] == '$' && (u[i+1] == '{' || u[i+1] >= 'A' && u[i+1] <= 'Z') {
			return true
		}
		if u[i] == '[' {
			j := i + 1
			for j < len(u) && (u[j] >= 'A' && u[j] <= 'Z' || u[j] == '_') {
				j++
			}
			if j < len(u) && u[j] == ']' && j-i > 2 {
				return true
			}
		}
	}
	return false
}

// payloadIn reports whether u's query values or path segments carry data:
// a long encoded or high-entropy value, or personal data.
func payloadIn(u *url.URL) bool {
	for _, vs := range u.Query() {
		for _, v := range vs {
			if isPayload(v) {
				return true
			}
		}
	}
	for _, seg := range strings.Split(u.Path, "/") {
		if isPayload(seg) {
			return true
		}
	}
	return false
}

func isPayload(v string) bool {
	if len(DetectPersonal(v)) > 0 {
		return true
	}
	if len(v) < minPayload {
		return false
	}
	// Words separated by spaces or hyphens read as a slug or a query, not
	// an encoded payload; a long run of encoded characters with varied
	// symbols does.
	if strings.Count(v, " ")+strings.Count(v, "-") > len(v)/12 {
		return false
	}
	return shannonEntropy(v) > 4.2
}

// nextScheme returns where the first "http://" or "https://" of s at or
// after i starts (ASCII case-insensitive), or -1. It looks for "://",
// which strings.Index finds many bytes at a time, and then at the scheme
// before it: text is read at that speed until it holds a URL.
func nextScheme(s string, i int) int {
	for {
		k := strings.Index(s[i:], "://")
		if k < 0 {
			return -1
		}
		k += i
		if k-5 >= i && strings.EqualFold(s[k-5:k], "https") {
			return k - 5
		}
		if k-4 >= i && strings.EqualFold(s[k-4:k], "http") {
			return k - 4
		}
		i = k + 3
	}
}
