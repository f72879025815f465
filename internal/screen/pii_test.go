package screen

import (
	"bufio"
	"compress/gzip"
	"encoding/json"
	"os"
	"strings"
	"testing"
)

func categories(fs []Finding) string {
	var cs []string
	for _, f := range fs {
		cs = append(cs, f.Rule)
	}
	return strings.Join(cs, ",")
}

func TestDetectPersonal(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ text, want string }{
		{"Customer: jane.doe+billing@example.co.uk, card 4111 1111 1111 1111 exp 04/28", "email,payment_card"},
		{"Amex 3782-822463-10005 and MC 5555555555554444", "payment_card,payment_card"},
		{"Refund to GB82 WEST 1234 5698 7654 32 please", "iban"},
		{"SSN 123-45-6789 on file", "us_ssn"},
		{"4111111111111111@cards.example", "email"},
		// Hard negatives.
		{"order 4111111111111112 (Luhn fails)", ""},
		{"GB00 WEST 1234 5698 7654 32 (bad check digits)", ""},
		{"SSNs never issued: 666-12-3456, 000-12-3456, 123-00-4567, 912-34-5678", ""},
		{`{"ts":1732590000123,"trace":"4bf92f3577b34da6a3ce929d0e0e4736","v":"1.24.3"}`, ""},
		{"build 4111111111111111abc and ver 4111111111111111.5", ""},
		{"user@localhost, a@b.c, @handle, x@1.2.3.4", "ip_address"},
		{"ref 123-45-67890 and zip 12345-6789", ""},
		{"Call me on +44 20 7946 0958 or (415) 555-0132; fax: 0490 75 40 81.", "phone,phone,phone"},
		{"Release 2026-11-26, build 1.2.3.4567, port 8080, 3 of 12 items, ids 1234 5678", ""},
		{"server 10.0.0.12/8 and 2001:db8::1, not 256.1.1.1 nor 12:30:45 nor std::vector", "ip_address,ip_address"},
	} {
		if got := categories(DetectPersonal(tc.text)); got != tc.want {
			t.Errorf("%q: found %q, want %q", tc.text, got, tc.want)
		}
	}
}

func TestRedact(t *testing.T) {
	t.Parallel()
	s := "pay 4111 1111 1111 1111 or GB82WEST12345698765432."
	got := Redact(s, DetectPersonal(s))
	if got != "pay [redacted:payment_card] or [redacted:iban]." {
		t.Errorf("redacted: %q", got)
	}
}

// TestPersonalOnPresidio scores the detector on the checksum categories of
// the Presidio dev split (../shared/corpora), when it is present. Figures
// go to docs/screening.md; the floor here guards against regressions.
func TestPersonalOnPresidio(t *testing.T) {
	f, err := os.Open("../../../shared/corpora/presidio_pii/dev.jsonl.gz")
	if err != nil {
		t.Skip("corpus not present:", err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"recognizer_test/credit_card": PIIPaymentCard, "recognizer_test/iban": PIIIBAN,
		"recognizer_test/us_ssn": PIIUSSSN, "recognizer_test/email": PIIEmail,
	}
	type score struct{ tp, fn, fp, tn int }
	scores := map[string]*score{}
	sc := bufio.NewScanner(zr)
	sc.Buffer(make([]byte, 1<<20), 1<<22)
	for sc.Scan() {
		var r struct{ Text, Label, Category string }
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		cat, ok := want[r.Category]
		if !ok {
			continue
		}
		s := scores[cat]
		if s == nil {
			s = &score{}
			scores[cat] = s
		}
		hit := strings.Contains(","+categories(DetectPersonal(Normalize(r.Text).Text))+",", ","+cat+",")
		switch {
		case r.Label == "attack" && hit:
			s.tp++
		case r.Label == "attack":
			s.fn++
		case hit:
			s.fp++
		default:
			s.tn++
		}
	}
	for cat, s := range scores {
		t.Logf("%-13s detected %d/%d, false positives %d/%d", cat, s.tp, s.tp+s.fn, s.fp, s.fp+s.tn)
	}
}

func FuzzDetectPersonal(f *testing.F) {
	for _, s := range []string{"4111 1111 1111 1111", "a@b.example", "GB82 WEST 1234 5698 7654 32", "078-05-1123", "1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		fs := DetectPersonal(s)
		last := 0
		for _, x := range fs {
			if x.Start < last || x.End <= x.Start || x.End > len(s) {
				t.Fatalf("finding %+v out of order or bounds in %q", x, s)
			}
			last = x.End
		}
		r := Redact(s, fs)
		if len(fs) > 0 && r == s {
			t.Fatalf("findings %v but nothing redacted", fs)
		}
	})
}

func BenchmarkDetectPersonalJSON(b *testing.B) {
	var sb strings.Builder
	for sb.Len() < 4096 {
		sb.WriteString(`{"id":1234567,"name":"Jane Roe","email":"jane.roe@example.com","card":"4111 1111 1111 1111","updated":"2026-11-26T10:00:00Z"},`)
	}
	s := sb.String()
	b.SetBytes(int64(len(s)))
	b.ReportAllocs()
	for b.Loop() {
		DetectPersonal(s)
	}
}

func TestNationalIDs(t *testing.T) {
	for text, want := range map[string]string{
		"DNI 12345678Z, NIE X1234567L":               "es_nif,es_nif",
		"henkilötunnus 131052-308T":                  "fi_hetu",
		"pnr 19910924-2397 och 871220-2384":          "se_personnummer,se_personnummer",
		"SIN 130-692-544; grouped 435 418 165":       "ca_sin,ca_sin",
		"NHS number 943 476 5919":                    "uk_nhs",
		"Aadhaar 2345 6789 0124, not 2345 6789 0125": "in_aadhaar",
		"TC Kimlik No: 10000000146":                  "tr_tckn",
		"my PESEL 44051401458":                       "pl_pesel",
		// Hard negatives: wrong check characters, bare numbers without a
		// word naming them, order numbers.
		"12345678A, 131052-308X, 19910924-2398, 130692544": "",
		"order 10000000146 shipped, invoice 44051401458":   "",
		// A bad NHS number in 3-3-4 groups reads as a North American phone number.
		"NHS 943 476 5918": "phone",
	} {
		if got := categories(DetectPersonal(text)); got != want {
			t.Errorf("%q: %q, want %q", text, got, want)
		}
	}
}
