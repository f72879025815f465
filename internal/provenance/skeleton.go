package provenance

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// gram is the width of an indexed gram, in skeleton bytes.
const gram = 8

// skeleton appends to dst the letters and digits of s, lower-cased, with
// diacritics removed, and reports where each word (run of letters and
// digits) ends in dst.
func skeleton(dst []byte, s string, ends []int) ([]byte, []int) {
	in := false
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			i++
			if f := asciiFold[c]; f != 0 {
				dst, in = append(dst, f), true
				continue
			}
			if in {
				ends = append(ends, len(dst))
			}
			in = false
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) {
			if unicode.Is(unicode.Mn, r) {
				continue // a combining mark inside a word
			}
			if in {
				ends = append(ends, len(dst))
			}
			in = false
			continue
		}
		dst, in = appendFolded(dst, r), true
	}
	if in {
		ends = append(ends, len(dst))
	}
	return dst, ends
}

// asciiFold maps an ASCII letter or digit to its skeleton byte, and
// everything else to 0.
var asciiFold = func() (t [utf8.RuneSelf]byte) {
	for c := byte('0'); c <= '9'; c++ {
		t[c] = c
	}
	for c := byte('a'); c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = c, c
	}
	return t
}()

// appendFolded appends r lower-cased, without diacritics.
func appendFolded(dst []byte, r rune) []byte {
	var buf [utf8.UTFMax * 4]byte
	n := utf8.EncodeRune(buf[:], unicode.ToLower(r))
	d := norm.NFD.Append(nil, buf[:n]...)
	for len(d) > 0 {
		c, size := utf8.DecodeRune(d)
		d = d[size:]
		if !unicode.Is(unicode.Mn, c) {
			dst = utf8.AppendRune(dst, c)
		}
	}
	return dst
}

// numbers calls fn with the canonical form of each number written in s:
// digits with optional thousands separators (",", ".", "'", space, thin
// space) and a decimal part. A number whose separator could be either
// ("1,000" or "1.000") is reported both ways.
func numbers(s string, fn func([]byte)) {
	buf := make([]byte, 0, 32)
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) || i > 0 && (isDigit(s[i-1]) || isLetter(s[i-1])) {
			continue
		}
		j := i
		for j < len(s) && (isDigit(s[j]) || (s[j] == ',' || s[j] == '.' || s[j] == '\'') && j+1 < len(s) && isDigit(s[j+1]) || s[j] == ' ' && groupOfThree(s, j+1)) {
			j++
		}
		if j < len(s) && isLetter(s[j]) {
			i = j // part of an identifier ("a1b2")
			continue
		}
		readings(s[i:j], buf, fn)
		i = j
	}
}

// canonicalNumbers are the canonical readings of a number written alone
// (an argument value), or none when s is not a number. A sign and a
// currency code or symbol around it are ignored.
func canonicalNumbers(s string) []string {
	s = strings.TrimSpace(s)
	s = strings.TrimLeft(s, "+-$€£¥ ")
	s = strings.TrimRight(s, " $€£¥")
	if len(s) > 4 && isLetter(s[0]) && isLetter(s[1]) && isLetter(s[2]) && s[3] == ' ' {
		s = s[4:] // "EUR 100"
	}
	if n := len(s); n > 4 && isLetter(s[n-1]) && isLetter(s[n-2]) && isLetter(s[n-3]) && s[n-4] == ' ' {
		s = s[:n-4] // "100 EUR"
	}
	if s == "" || len(s) > 64 || !isDigit(s[0]) || !isDigit(s[len(s)-1]) {
		return nil
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isDigit(c) && c != ',' && c != '.' && c != '\'' && c != ' ' {
			return nil
		}
	}
	var out []string
	readings(s, nil, func(b []byte) { out = append(out, string(b)) })
	return out
}

// readings calls fn with the canonical forms of a written number (in
// buf's storage): separators removed, "." as the decimal point, trailing
// fractional zeros dropped. "1,000" and "1.000" have two readings.
func readings(s string, buf []byte, fn func([]byte)) {
	last := -1
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == ',' || s[i] == '.' {
			last = i
			break
		}
	}
	digits := func(dst []byte, t string) []byte {
		for i := 0; i < len(t); i++ {
			if isDigit(t[i]) {
				dst = append(dst, t[i])
			}
		}
		return dst
	}
	if last < 0 {
		fn(digits(buf[:0], s))
		return
	}
	thousands := strings.IndexByte(s[:last], s[last]) >= 0 // "1,000,000"
	if !thousands {
		d := append(digits(buf[:0], s[:last]), '.')
		d = digits(d, s[last+1:])
		for len(d) > 0 && d[len(d)-1] == '0' {
			d = d[:len(d)-1]
		}
		if len(d) > 0 && d[len(d)-1] == '.' {
			d = d[:len(d)-1]
		}
		if len(d) == 0 {
			d = append(d, '0')
		}
		fn(d)
		buf = d[:0]
	}
	if thousands || len(s)-last-1 == 3 && !strings.ContainsAny(s[:last], ",.") {
		fn(digits(buf[:0], s))
	}
}

// groupOfThree: s[i:] starts with exactly three digits (a thousands group
// after a space: "1 000", not "9500 2").
func groupOfThree(s string, i int) bool {
	return i+3 <= len(s) && isDigit(s[i]) && isDigit(s[i+1]) && isDigit(s[i+2]) && (i+3 == len(s) || !isDigit(s[i+3]))
}

func isDigit(c byte) bool  { return '0' <= c && c <= '9' }
func isLetter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
