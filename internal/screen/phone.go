package screen

import (
	"net/netip"
	"strings"
)

// Phone numbers and IP addresses. Neither has a checksum, so a phone
// number needs a shape no other number has (an international prefix, an
// area code in parentheses, the North American 3-3-4 form, a trunk 0 and
// nine or more digits) or a word nearby that says it is one; an IP address
// must parse as one, on word boundaries.

const (
	PIIPhone     = "phone"
	PIIIPAddress = "ip_address"
)

// phoneCues are words that, shortly before a grouped number, say it is a
// phone number.
var phoneCues = []string{"phone", "tel", "call", "mobile", "cell", "fax", "whatsapp", "sms", "text me", "contact", "number", "messages to", "registered", "reach me", "dial"}

// phones finds phone numbers in s.
func phones(s string) []Finding {
	var out []Finding
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '+' || c == '(' || isDigitB(c)) || i > 0 && (isAlnumB(s[i-1]) || s[i-1] == '.' || s[i-1] == '-' || s[i-1] == '+' || s[i-1] == '/') {
			continue
		}
		e, digits, groups, shape := phoneAt(s, i)
		if e <= i || digits < 7 || digits > 15 {
			continue
		}
		if e < len(s) && (isAlnumB(s[e]) || (s[e] == '.' || s[e] == '-' || s[e] == '/') && e+1 < len(s) && isDigitB(s[e+1])) {
			i = e
			continue
		}
		raw := s[i:e]
		if groups < 2 && c != '+' || looksLikeDateOrAddress(raw) {
			i = e
			continue
		}
		score := 0.0
		switch {
		case shape:
			score = 0.85
		case hasCue(s, i):
			score = 0.75
		default:
			i = e
			continue
		}
		out = append(out, Finding{Category: CategoryPersonal, Rule: PIIPhone, Score: score, Start: i, End: e})
		i = e
	}
	return out
}

// phoneAt reads a grouped number at i: an optional '+', digit groups
// separated by one space, hyphen or dot, and an optional parenthesised
// group. It returns the end, the digit and group counts, and whether the
// shape alone marks a phone number.
func phoneAt(s string, i int) (end, digits, groups int, shape bool) {
	j := i
	plus := s[j] == '+'
	if plus {
		j++
	}
	paren := false
	var lens []int
	for j < len(s) {
		open := false
		if s[j] == '(' {
			if paren {
				break
			}
			open = true
			j++
		}
		k := j
		for k < len(s) && isDigitB(s[k]) {
			k++
		}
		if k == j || k-j > 8 {
			break // end is still after the last complete group
		}
		lens = append(lens, k-j)
		digits += k - j
		j = k
		if open {
			if j >= len(s) || s[j] != ')' {
				return i, 0, 0, false
			}
			paren = true
			j++
			if j < len(s) && s[j] == ' ' && j+1 < len(s) && isDigitB(s[j+1]) {
				j++
			}
			end = j
			continue
		}
		end = j
		if j+1 < len(s) && (s[j] == ' ' || s[j] == '-' || s[j] == '.') && (isDigitB(s[j+1]) || s[j+1] == '(') {
			j++
			continue
		}
		break
	}
	for end > i && (s[end-1] == ' ' || s[end-1] == ')' && !paren) {
		end--
	}
	groups = len(lens)
	nanp := len(lens) == 3 && lens[0] == 3 && lens[1] == 3 && lens[2] == 4 && s[i] >= '2' && s[i] <= '9'
	nanpParen := paren && s[i] == '(' && len(lens) == 3 && lens[0] == 3
	// A trunk-prefixed national number; the 3-2-4 grouping is the SSN's.
	ssnShape := len(lens) == 3 && lens[0] == 3 && lens[1] == 2 && lens[2] == 4
	trunk := s[i] == '0' && digits >= 9 && !ssnShape
	shape = plus && digits >= 8 || nanp || nanpParen || paren && digits >= 8 || trunk
	return end, digits, groups, shape
}

// looksLikeDateOrAddress rejects dates (2026-11-26, 26.11.2026), IPv4
// addresses and version-like dotted numbers.
func looksLikeDateOrAddress(raw string) bool {
	parts := strings.FieldsFunc(raw, func(r rune) bool { return r == '-' || r == '.' || r == ' ' || r == '/' })
	if len(parts) == 3 {
		a, b, c := parts[0], parts[1], parts[2]
		if len(a) == 4 && (a[:2] == "19" || a[:2] == "20") && len(b) <= 2 && len(c) <= 2 {
			return true
		}
		if len(a) <= 2 && len(b) <= 2 && len(c) == 4 && (c[:2] == "19" || c[:2] == "20") {
			return true
		}
	}
	if strings.Count(raw, ".") == 3 && !strings.ContainsAny(raw, " -") {
		return true
	}
	return false
}

func hasCue(s string, i int) bool {
	lo := max(0, i-32)
	// The cue belongs to the nearest number: none may stand between.
	for k := i - 1; k >= lo; k-- {
		if isDigitB(s[k]) {
			lo = k + 1
			break
		}
	}
	pre := strings.ToLower(s[lo:i])
	for _, c := range phoneCues {
		if strings.Contains(pre, c) {
			return true
		}
	}
	return false
}

// ipAddresses finds IPv4 and IPv6 addresses (with an optional /prefix)
// in s.
func ipAddresses(s string) []Finding {
	var out []Finding
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(isHex(c) || c == ':') || i > 0 && (isAlnumB(s[i-1]) || s[i-1] == ':' || s[i-1] == '.' || s[i-1] == '_') {
			continue
		}
		// The run of address characters.
		e := i
		colons, dots := 0, 0
		for e < len(s) && (isHex(s[e]) || s[e] == ':' || s[e] == '.') {
			switch s[e] {
			case ':':
				colons++
			case '.':
				dots++
			}
			e++
		}
		for e > i && s[e-1] == '.' {
			e--
			dots--
		}
		if colons < 2 && dots != 3 || e-i < 2 {
			i = e
			continue
		}
		if e < len(s) && (isAlnumB(s[e]) || s[e] == '_') {
			i = e
			continue
		}
		addr, err := netip.ParseAddr(s[i:e])
		if err != nil || dots == 3 && colons == 0 && !plainQuad(s[i:e]) {
			i = e
			continue
		}
		_ = addr
		end := e
		// A prefix length or a zone belongs to the address.
		if end < len(s) && s[end] == '/' {
			k := end + 1
			for k < len(s) && k-end <= 3 && isDigitB(s[k]) {
				k++
			}
			if k > end+1 {
				end = k
			}
		} else if end < len(s) && s[end] == '%' {
			k := end + 1
			for k < len(s) && isAlnumB(s[k]) {
				k++
			}
			end = k
		}
		out = append(out, Finding{Category: CategoryPersonal, Rule: PIIIPAddress, Score: 0.8, Start: i, End: end})
		i = end
	}
	return out
}

// plainQuad reports a dotted quad without leading zeros (which netip
// refuses anyway) written as four decimal groups.
func plainQuad(s string) bool {
	for _, p := range strings.Split(s, ".") {
		if p == "" || len(p) > 3 || strings.IndexFunc(p, func(r rune) bool { return r < '0' || r > '9' }) >= 0 {
			return false
		}
	}
	return true
}

func isHex(c byte) bool { return isDigitB(c) || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }
