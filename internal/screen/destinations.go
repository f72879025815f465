package screen

import (
	"net/url"
	"strings"
)

// maxScannedBytes bounds the text Destinations scans.
const maxScannedBytes = 1 << 20

// Destinations calls fn with each normalised value in text that identifies a
// destination or an account. It is a single hand-written pass (regular
// expressions were a hundred times slower on typical JSON results).
func Destinations(text string, fn func(string)) {
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
		case (c == 'w' || c == 'W') && (i == 0 || !isAlnumB(text[i-1]) && text[i-1] != '/' && text[i-1] != '.' && text[i-1] != '@') && len(text) > i+4 && strings.EqualFold(text[i:i+4], "www."):
			// A host written without a scheme ("www.example.com/page").
			if v, end, ok := bareHostAt(text, i); ok {
				fn("host:" + v)
				i = end - 1
			}
		case isUpperB(c) && (i == 0 || !isAlnumB(text[i-1])):
			// No skip past it: the account number inside counts too.
			if v, ok := ibanAt(text, i); ok {
				fn("iban:" + v)
			}
		case isDigitB(c) && (i == 0 || !isAlnumB(text[i-1])):
			v, end := numberAt(text, i)
			if len(v) >= 9 && len(v) <= 19 {
				fn("number:" + v)
			}
			i = end - 1
		}
	}
}

// emailAt returns the address around the '@' at i, lower-cased.
func emailAt(s string, at int) (string, bool) {
	b, e, ok := emailSpan(s, at)
	if !ok {
		return "", false
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
	rest := strings.TrimRight(s[i:e], ".,;:!?")
	if h, ok := plainHost(rest[3:]); ok {
		return h, e, true
	}
	u, err := url.Parse(scheme + rest)
	if err != nil || u.Hostname() == "" {
		return "", e, false
	}
	return strings.ToLower(u.Hostname()), e, true
}

// plainHost is the host of a URL's authority and what follows it, when
// the authority is a plain name with an optional port (no user info, IPv6
// brackets or escapes: those go to url.Parse): the common case, without
// allocating a URL.
func plainHost(rest string) (string, bool) {
	end := len(rest)
	if j := strings.IndexAny(rest, "/?#"); j >= 0 {
		end = j
	}
	auth := rest[:end]
	if c := strings.IndexByte(auth, ':'); c >= 0 {
		for k := c + 1; k < len(auth); k++ {
			if !isDigitB(auth[k]) {
				return "", false
			}
		}
		auth = auth[:c]
	}
	if auth == "" {
		return "", false
	}
	lower := true
	for k := 0; k < len(auth); k++ {
		c := auth[k]
		switch {
		case c >= 'A' && c <= 'Z':
			lower = false
		case isAlnumB(c) || c == '.' || c == '-' || c == '_':
		default:
			return "", false
		}
	}
	if lower {
		return auth, true
	}
	return strings.ToLower(auth), true
}

// bareHostAt returns the host of a scheme-less "www." address at i.
func bareHostAt(s string, i int) (string, int, bool) {
	e := i
	for e < len(s) && e-i < 253 && (isAlnumB(s[e]) || s[e] == '.' || s[e] == '-') {
		e++
	}
	host := strings.ToLower(strings.TrimRight(s[i:e], ".-"))
	dot := strings.LastIndexByte(host, '.')
	if dot <= 4 || len(host)-dot < 3 {
		return "", e, false // "www." alone, or no top-level domain
	}
	return host, e, true
}

// ibanAt returns the IBAN (spaces removed) starting at i, if its check
// digits are right.
func ibanAt(s string, i int) (string, bool) {
	e, ok := ibanSpan(s, i)
	if !ok {
		return "", false
	}
	return strings.ReplaceAll(s[i:e], " ", ""), true
}

// numberAt returns the digits of the number starting at i (digits grouped
// by single spaces, dots or hyphens, after an optional '+') when there are
// 9 to 19 of them (an account or phone number), and where it ends.
func numberAt(s string, i int) (string, int) {
	var buf [19]byte
	n := 0
	e := i
	for e < len(s) {
		if isDigitB(s[e]) {
			if n < len(buf) {
				buf[n] = s[e]
			}
			n++
			e++
			continue
		}
		if (s[e] == ' ' || s[e] == '.' || s[e] == '-') && e+1 < len(s) && isDigitB(s[e+1]) {
			e++
			continue
		}
		break
	}
	if e < len(s) && isAlnumB(s[e]) || n > len(buf) || n < 9 {
		return "", e // part of a word or identifier, or no account number's length
	}
	return string(buf[:n]), e
}
