package screen

import (
	"sort"
	"strings"
)

// Personal-data types found by DetectPersonal (a Finding's Rule; its
// Category is CategoryPersonal). Only categories with a
// checksum or a strict structure are detected here: a match is evidence,
// not a guess.
const (
	PIIEmail       = "email"
	PIIPaymentCard = "payment_card" // 13-19 digits, Luhn-valid, a known card prefix
	PIIIBAN        = "iban"         // ISO 13616 mod-97
	PIIUSSSN       = "us_ssn"       // NNN-NN-NNNN with the SSA's impossible values excluded
)

// Finding is one detection: a category, a confidence score (0-1) and the
// byte span in the scanned text.
type Finding struct {
	Category   string
	Rule       string // the pattern, model or gitleaks rule that found it
	Score      float64
	Start, End int
}

// DetectPersonal finds personal data in s (scan normalised text).
func DetectPersonal(s string) []Finding {
	var out []Finding
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '@':
			if b, e, ok := emailSpan(s, i); ok {
				// The local part may hold a number already taken for
				// something else: the address is the finding.
				for len(out) > 0 && out[len(out)-1].End > b {
					out = out[:len(out)-1]
				}
				out = append(out, Finding{Category: CategoryPersonal, Rule: PIIEmail, Score: 0.95, Start: b, End: e})
				i = e - 1
			}
		case isUpperB(c) && (i == 0 || !isAlnumB(s[i-1])):
			if e, ok := ibanSpan(s, i); ok {
				out = append(out, Finding{Category: CategoryPersonal, Rule: PIIIBAN, Score: 0.99, Start: i, End: e})
				i = e - 1
			}
		case isDigitB(c) && (i == 0 || !isAlnumB(s[i-1]) && s[i-1] != '.' && s[i-1] != '-'):
			e := numberEnd(s, i)
			out = append(out, numbers(s, i, e)...)
			i = e - 1
		}
	}
	// IP addresses, national identifiers and phone numbers, where nothing
	// stronger was found.
	n := len(out)
	for _, f := range append(append(ipAddresses(s), nationalIDs(s)...), phones(s)...) {
		if !overlapsAny(out, f) {
			out = append(out, f)
		}
	}
	if len(out) > n {
		sort.Slice(out, func(i, j int) bool { return out[i].Start < out[j].Start })
	}
	return out
}

func overlapsAny(fs []Finding, f Finding) bool {
	for _, g := range fs {
		if f.Start < g.End && g.Start < f.End {
			return true
		}
	}
	return false
}

func isDigitB(c byte) bool { return c >= '0' && c <= '9' }
func isUpperB(c byte) bool { return c >= 'A' && c <= 'Z' }
func isAlnumB(c byte) bool { return isDigitB(c) || isUpperB(c) || c >= 'a' && c <= 'z' }

// emailSpan returns the span of the address around the '@' at at.
func emailSpan(s string, at int) (int, int, bool) {
	local := func(c byte) bool { return isAlnumB(c) || strings.IndexByte("._%+-", c) >= 0 }
	b := at
	for b > 0 && at-b < 64 && local(s[b-1]) {
		b--
	}
	for b < at && s[b] == '.' {
		b++
	}
	e := at + 1
	for e < len(s) && e-at <= 253 && (isAlnumB(s[e]) || s[e] == '.' || s[e] == '-') {
		e++
	}
	for e > at+1 && (s[e-1] == '.' || s[e-1] == '-') {
		e--
	}
	d := s[at+1 : e]
	dot := strings.LastIndexByte(d, '.')
	if b == at || dot <= 0 || len(d)-dot-1 < 2 {
		return 0, 0, false
	}
	tld := d[dot+1:]
	if strings.HasPrefix(tld, "xn--") { // an internationalised TLD
		return b, e, true
	}
	for _, c := range []byte(tld) {
		if !isAlnumB(c) || isDigitB(c) {
			return 0, 0, false
		}
	}
	return b, e, true
}

// ibanSpan returns the end of a valid IBAN starting at i (groups of up to
// four separated by single spaces are allowed).
func ibanSpan(s string, i int) (int, bool) {
	if i+4 > len(s) || !isUpperB(s[i+1]) || !isDigitB(s[i+2]) || !isDigitB(s[i+3]) {
		return 0, false
	}
	var b strings.Builder
	b.WriteString(s[i : i+4])
	e := i + 4
	for e < len(s) && b.Len() < 34 {
		if s[e] == ' ' && e+1 < len(s) && (isUpperB(s[e+1]) || isDigitB(s[e+1])) {
			e++
		}
		if !isUpperB(s[e]) && !isDigitB(s[e]) {
			break
		}
		b.WriteByte(s[e])
		e++
	}
	if e < len(s) && isAlnumB(s[e]) {
		return 0, false
	}
	return e, ValidIBAN(b.String())
}

// ValidIBAN checks an IBAN's ISO 13616 mod-97 check digits.
func ValidIBAN(s string) bool {
	if len(s) < 15 || len(s) > 34 {
		return false
	}
	rem := 0
	for _, r := range s[4:] + s[:4] {
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

// numberEnd returns where the number at i ends (digits grouped by single
// spaces or hyphens).
func numberEnd(s string, i int) int {
	e := i
	for e < len(s) {
		if isDigitB(s[e]) {
			e++
			continue
		}
		if (s[e] == ' ' || s[e] == '-') && e+1 < len(s) && isDigitB(s[e+1]) {
			e++
			continue
		}
		break
	}
	return e
}

// numbers finds cards and SSNs in the number s[i:e]. Several may be
// written one after another ("4012888888881881 4012-8888-8888-1881"), so
// every run of consecutive groups is tried, longest first.
func numbers(s string, i, e int) []Finding {
	if e < len(s) && (isAlnumB(s[e]) || s[e] == '.' && e+1 < len(s) && isDigitB(s[e+1])) {
		return nil // part of an identifier, a version or a decimal
	}
	// groups: the start and end of each digit group.
	var groups [][2]int
	for j := i; j < e; {
		k := j
		for k < e && isDigitB(s[k]) {
			k++
		}
		groups = append(groups, [2]int{j, k})
		j = k + 1
	}
	var out []Finding
	for g := 0; g < len(groups); {
		found := false
		for h := len(groups) - 1; h >= g && !found; h-- {
			start, end := groups[g][0], groups[h][1]
			if end-start > 40 {
				continue
			}
			raw := s[start:end]
			digits := strings.Map(func(r rune) rune {
				if r >= '0' && r <= '9' {
					return r
				}
				return -1
			}, raw)
			switch {
			case cardNumber(digits):
				out = append(out, Finding{Category: CategoryPersonal, Rule: PIIPaymentCard, Score: 0.97, Start: start, End: end})
			case ssn(raw, digits):
				out = append(out, Finding{Category: CategoryPersonal, Rule: PIIUSSSN, Score: 0.85, Start: start, End: end})
			default:
				continue
			}
			found, g = true, h+1
		}
		if !found {
			g++
		}
	}
	return out
}

// cardNumber reports whether d is a Luhn-valid number with a card
// network's prefix and length.
func cardNumber(d string) bool {
	if len(d) < 12 || len(d) > 19 || !luhn(d) {
		return false
	}
	switch {
	case len(d) == 12:
		// Only Maestro issues 12-digit numbers.
		return maestro(d)
	case d[0] == '4': // Visa
		return len(d) == 13 || len(d) == 16 || len(d) == 19
	case d[:2] >= "51" && d[:2] <= "55", d[:4] >= "2221" && d[:4] <= "2720": // Mastercard
		return len(d) == 16
	case d[:2] == "34" || d[:2] == "37": // American Express
		return len(d) == 15
	case d[:4] == "6011" || d[:2] == "65" || d[:3] >= "644" && d[:3] <= "649": // Discover
		return len(d) >= 16
	case d[:4] >= "3528" && d[:4] <= "3589": // JCB
		return len(d) >= 16
	case d[:4] == "2131" || d[:4] == "1800": // JCB, 15 digits
		return len(d) == 15
	case d[0] == '1': // UATP
		return len(d) == 15
	case maestro(d):
		return true
	case d[:3] >= "300" && d[:3] <= "305" || d[:2] == "36" || d[:2] == "38": // Diners
		return len(d) >= 14
	}
	return false
}

// maestro reports a Maestro number: 12-19 digits with one of its issuer
// prefixes (5018, 5020, 5038, 5893, 6304, 6759, 6761-6763, 0604, 6390, or
// the 56-58 range).
func maestro(d string) bool {
	return strings.Contains("|5018|5020|5038|5893|6304|6759|6761|6762|6763|0604|6390|", "|"+d[:4]+"|") ||
		d[:2] >= "56" && d[:2] <= "58"
}

func luhn(d string) bool {
	sum := 0
	for i := len(d) - 1; i >= 0; i-- {
		n := int(d[i] - '0')
		if (len(d)-i)%2 == 0 {
			n *= 2
			if n > 9 {
				n -= 9
			}
		}
		sum += n
	}
	return sum%10 == 0
}

// ssn reports whether raw (digits d) is a US social security number
// written NNN-NN-NNNN (or with spaces), excluding numbers never issued (area 000, 666 or
// 900-999, group 00, serial 0000).
func ssn(raw, d string) bool {
	if len(d) != 9 || len(raw) != 11 || raw[3] != '-' && raw[3] != ' ' {
		return false
	}
	if raw[3] != raw[6] { // one separator style, not "693-09.4444"
		return false
	}
	area, group, serial := d[:3], d[3:5], d[5:]
	return area != "000" && area != "666" && area[0] != '9' && group != "00" && serial != "0000"
}

// Redact returns s with each finding's span replaced by a mask naming its
// rule (or category), e.g. "[redacted:payment_card]". Findings must not overlap and
// must be in order (as DetectPersonal returns them).
func Redact(s string, fs []Finding) string {
	if len(fs) == 0 {
		return s
	}
	var b strings.Builder
	last := 0
	for _, f := range fs {
		if f.Start < last || f.End > len(s) {
			continue
		}
		b.WriteString(s[last:f.Start])
		name := f.Rule
		if name == "" {
			name = f.Category
		}
		b.WriteString("[redacted:" + name + "]")
		last = f.End
	}
	b.WriteString(s[last:])
	return b.String()
}
