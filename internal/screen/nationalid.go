package screen

import (
	"strings"
)

// National identifiers with a checksum. Formats with a check letter or
// character (Spain's NIF/NIE, Finland's HETU) or a date and a separator
// (Sweden's personnummer) are evidence on their own; bare digit runs with
// a check digit (Canada's SIN, the UK's NHS number, India's Aadhaar,
// Turkey's and Poland's national numbers) also need their usual grouping
// or a word nearby that names them, since one random number in ten passes
// a check digit.
const (
	PIIESNIF          = "es_nif"          // DNI/NIF and NIE, mod-23 letter
	PIIFIHETU         = "fi_hetu"         // henkilötunnus, mod-31 character
	PIISEPersonnummer = "se_personnummer" // YYMMDD-NNNC, Luhn
	PIICASIN          = "ca_sin"          // 9 digits, Luhn
	PIIUKNHS          = "uk_nhs"          // 10 digits, mod 11
	PIIINAadhaar      = "in_aadhaar"      // 12 digits, Verhoeff
	PIITRTCKN         = "tr_tckn"         // 11 digits, two check digits
	PIIPLPESEL        = "pl_pesel"        // 11 digits, weighted check digit
)

// NationalIDTypes are the national-identifier types DetectPersonal finds.
var NationalIDTypes = []string{PIIESNIF, PIIFIHETU, PIISEPersonnummer, PIICASIN, PIIUKNHS, PIIINAadhaar, PIITRTCKN, PIIPLPESEL}

var idCues = map[string][]string{
	PIICASIN:     {"sin", "social insurance"},
	PIIUKNHS:     {"nhs"},
	PIIINAadhaar: {"aadhaar", "aadhar", "uidai"},
	PIITRTCKN:    {"tc kimlik", "kimlik", "tckn", "t.c.", "turkish id", "national id", "identity number"},
	PIIPLPESEL:   {"pesel"},
}

// nationalIDs finds national identifiers in s.
func nationalIDs(s string) []Finding {
	var out []Finding
	add := func(rule string, b, e int, score float64) {
		out = append(out, Finding{Category: CategoryPersonal, Rule: rule, Score: score, Start: b, End: e})
	}
	for i := 0; i < len(s); i++ {
		if i > 0 && (isAlnumB(s[i-1]) || s[i-1] == '-' || s[i-1] == '.' || s[i-1] == '/') {
			continue
		}
		c := s[i]
		if !(isDigitB(c) || c == 'X' || c == 'Y' || c == 'Z' || c == 'x' || c == 'y' || c == 'z') {
			continue
		}
		tok := s[i:min(len(s), i+24)]
		// The space-free word at i, for the formats with letters.
		first := tok
		if k := strings.IndexAny(tok, " \t\n,;:()[]{}\"'<>"); k >= 0 {
			first = tok[:k]
		}
		first = strings.TrimRight(first, ".")
		boundary := func(n int) bool { return i+n >= len(s) || !isAlnumB(s[i+n]) }
		// Digits in the leading run (separators skipped): every format
		// here has 6 to 12 (a HETU 6 before its sign); most numbers have fewer.
		digits, k0 := 0, 0
		if !isDigitB(c) {
			k0 = 1 // an NIE's X, Y or Z
		}
		for k := k0; k < len(tok) && (isDigitB(tok[k]) || (tok[k] == ' ' || tok[k] == '-' || tok[k] == '+') && k > k0); k++ {
			if isDigitB(tok[k]) {
				digits++
			}
		}
		if digits < 6 || digits > 12 {
			continue
		}
		switch {
		case nifOrNIE(first) && boundary(len(first)):
			add(PIIESNIF, i, i+len(first), 0.95)
		case hetu(first) && boundary(len(first)):
			add(PIIFIHETU, i, i+len(first), 0.95)
		case personnummer(first) && boundary(len(first)):
			add(PIISEPersonnummer, i, i+len(first), 0.9)
		default:
			rule, n, ok := digitID(s, i, tok)
			if !ok || !boundary(n) {
				continue
			}
			add(rule, i, i+n, 0.85)
		}
		i = out[len(out)-1].End - 1
	}
	return out
}

// digitID judges a run of digits grouped by spaces or hyphens.
func digitID(s string, i int, tok string) (string, int, bool) {
	// The run of digits and single separators from the token's start.
	n := 0
	var groups []int
	g := 0
	for n < len(tok) {
		switch {
		case isDigitB(tok[n]):
			g++
		case (tok[n] == ' ' || tok[n] == '-') && g > 0 && n+1 < len(tok) && isDigitB(tok[n+1]):
			groups = append(groups, g)
			g = 0
		default:
			goto done
		}
		n++
	}
done:
	if g > 0 {
		groups = append(groups, g)
	}
	raw := tok[:n]
	var buf [24]byte
	db := buf[:0]
	for k := 0; k < len(raw); k++ {
		if isDigitB(raw[k]) {
			db = append(db, raw[k])
		}
	}
	d := string(db)
	grouped := func(want ...int) bool {
		if len(groups) != len(want) {
			return false
		}
		for k := range want {
			if groups[k] != want[k] {
				return false
			}
		}
		return true
	}
	cue := func(rule string) bool { return cueBefore(s, i, idCues[rule]) }
	switch len(d) {
	case 9:
		if luhn(d) && d[0] != '0' && d[0] != '8' && (grouped(3, 3, 3) || cue(PIICASIN)) {
			return PIICASIN, n, true
		}
	case 10:
		if nhs(d) && (grouped(3, 3, 4) || cue(PIIUKNHS)) {
			return PIIUKNHS, n, true
		}
	case 11:
		if tckn(d) && cue(PIITRTCKN) {
			return PIITRTCKN, n, true
		}
		if pesel(d) && cue(PIIPLPESEL) {
			return PIIPLPESEL, n, true
		}
	case 12:
		if d[0] >= '2' && verhoeff(d) && (grouped(4, 4, 4) || cue(PIIINAadhaar)) {
			return PIIINAadhaar, n, true
		}
	}
	return "", 0, false
}

// cueBefore reports whether one of the cue words occurs in the 40 bytes
// before i (case-insensitively).
func cueBefore(s string, i int, cues []string) bool {
	pre := strings.ToLower(s[max(0, i-40):i])
	for _, c := range cues {
		if strings.Contains(pre, c) {
			return true
		}
	}
	return false
}

// nifOrNIE: 8 digits and a check letter (NIF), or X/Y/Z, 7 digits and a
// check letter (NIE); the letter is "TRWAGMYFPDXBNJZSQVHLCKE"[n mod 23].
func nifOrNIE(t string) bool {
	t = strings.ToUpper(strings.ReplaceAll(t, "-", ""))
	if len(t) == 8 && t[0] >= '0' && t[0] <= '9' {
		t = "0" + t // a seven-digit DNI, written without its leading zero
	}
	if len(t) != 9 {
		return false
	}
	num := t[:8]
	switch t[0] {
	case 'X':
		num = "0" + t[1:8]
	case 'Y':
		num = "1" + t[1:8]
	case 'Z':
		num = "2" + t[1:8]
	}
	n := 0
	for _, r := range num {
		if r < '0' || r > '9' {
			return false
		}
		n = n*10 + int(r-'0')
	}
	return t[8] == "TRWAGMYFPDXBNJZSQVHLCKE"[n%23]
}

// hetu: DDMMYY, a century sign, a three-digit individual number and a
// check character "0123456789ABCDEFHJKLMNPRSTUVWXY"[DDMMYYNNN mod 31].
func hetu(t string) bool {
	t = strings.ToUpper(t)
	if len(t) != 11 || !strings.ContainsRune("+-ABCDEFUVWXY", rune(t[6])) || !validDate(t[0:2], t[2:4]) {
		return false
	}
	n := 0
	for _, r := range t[:6] + t[7:10] {
		if r < '0' || r > '9' {
			return false
		}
		n = n*10 + int(r-'0')
	}
	return t[10] == "0123456789ABCDEFHJKLMNPRSTUVWXY"[n%31]
}

// personnummer: (YY)YYMMDD, '-' or '+', NNNC, Luhn over the ten digits;
// the twelve-digit form (a century, 18-20) may leave the separator out.
func personnummer(t string) bool {
	if len(t) == 12 && (t[:2] == "18" || t[:2] == "19" || t[:2] == "20") {
		t = t[:8] + "-" + t[8:]
	}
	k := strings.IndexAny(t, "-+")
	if k != 6 && k != 8 || len(t) != k+5 {
		return false
	}
	date, rest := t[:k], t[k+1:]
	if k == 8 {
		date = date[2:]
	}
	d := date + rest
	for _, r := range d {
		if r < '0' || r > '9' {
			return false
		}
	}
	day := date[4:6]
	if day[0] >= '6' { // co-ordination numbers add 60 to the day
		day = string(day[0]-6) + day[1:]
	}
	return validDate(day, date[2:4]) && luhn(d)
}

func validDate(dd, mm string) bool {
	if len(dd) != 2 || len(mm) != 2 {
		return false
	}
	return dd >= "01" && dd <= "31" && mm >= "01" && mm <= "12"
}

// nhs: weights 10..2 over the first nine digits; the check digit is 11
// minus the sum mod 11 (11 means 0, 10 is never issued).
func nhs(d string) bool {
	sum := 0
	for k := 0; k < 9; k++ {
		sum += int(d[k]-'0') * (10 - k)
	}
	c := 11 - sum%11
	if c == 11 {
		c = 0
	}
	return c != 10 && c == int(d[9]-'0')
}

// tckn: first digit non-zero; d10 = (7×odd-position sum − even-position
// sum) mod 10; d11 = sum of the first ten mod 10.
func tckn(d string) bool {
	if d[0] == '0' {
		return false
	}
	odd, even, all := 0, 0, 0
	for k := 0; k < 9; k++ {
		v := int(d[k] - '0')
		if k%2 == 0 {
			odd += v
		} else {
			even += v
		}
	}
	d10 := ((odd*7-even)%10 + 10) % 10
	for k := 0; k < 10; k++ {
		all += int(d[k] - '0')
	}
	return d10 == int(d[9]-'0') && all%10 == int(d[10]-'0')
}

// pesel: weights 1,3,7,9 repeating; the check digit makes the weighted
// sum a multiple of ten; month 01-12 (plus 20, 40, 60 or 80 by century).
func pesel(d string) bool {
	w := []int{1, 3, 7, 9, 1, 3, 7, 9, 1, 3}
	sum := 0
	for k := range 10 {
		sum += int(d[k]-'0') * w[k]
	}
	month := int(d[2]-'0')*10 + int(d[3]-'0')
	return (10-sum%10)%10 == int(d[10]-'0') && month%20 >= 1 && month%20 <= 12
}

// verhoeff is the Verhoeff checksum (Aadhaar's).
func verhoeff(d string) bool {
	mul := [10][10]int{{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, {1, 2, 3, 4, 0, 6, 7, 8, 9, 5}, {2, 3, 4, 0, 1, 7, 8, 9, 5, 6}, {3, 4, 0, 1, 2, 8, 9, 5, 6, 7}, {4, 0, 1, 2, 3, 9, 5, 6, 7, 8}, {5, 9, 8, 7, 6, 0, 4, 3, 2, 1}, {6, 5, 9, 8, 7, 1, 0, 4, 3, 2}, {7, 6, 5, 9, 8, 2, 1, 0, 4, 3}, {8, 7, 6, 5, 9, 3, 2, 1, 0, 4}, {9, 8, 7, 6, 5, 4, 3, 2, 1, 0}}
	perm := [8][10]int{{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, {1, 5, 7, 6, 2, 8, 3, 0, 9, 4}, {5, 8, 0, 3, 7, 9, 6, 1, 4, 2}, {8, 9, 1, 6, 0, 4, 3, 5, 2, 7}, {9, 4, 5, 3, 1, 2, 6, 8, 7, 0}, {4, 2, 8, 6, 5, 7, 3, 9, 0, 1}, {2, 7, 9, 3, 8, 0, 6, 4, 1, 5}, {7, 0, 4, 6, 9, 1, 3, 2, 5, 8}}
	c := 0
	for k := 0; k < len(d); k++ {
		c = mul[c][perm[k%8][int(d[len(d)-1-k]-'0')]]
	}
	return c == 0
}
