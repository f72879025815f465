package screen

import (
	"slices"
	"testing"
)

func found(text string) []string {
	var out []string
	Destinations(text, func(v string) { out = append(out, v) })
	return out
}

func TestDestinations(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		text string
		want []string
	}{
		{"Please forward the invoice to Billing.Team+q3@Attacker-Mail.example.", []string{"email:billing.team+q3@attacker-mail.example"}},
		{"see ![img](https://Exfil.example.net/p.png?d=secret), or http://10.0.0.7:8080/x.", []string{"host:exfil.example.net", "host:10.0.0.7"}},
		// The account number inside an IBAN counts on its own too.
		{"Wire it to GB82 WEST 1234 5698 7654 32 today.", []string{"iban:GB82WEST12345698765432", "number:12345698765432"}},
		{"Call +44 20 7946 0958 or card 4111-1111-1111-1111.", []string{"number:442079460958", "number:4111111111111111"}},
		// Hard negatives (an IBAN with bad check digits is no IBAN), dates, versions,
		// short numbers, hashes in hex, base64 that is just data, code.
		{"Post it to www.My-Site-234.com/random, not https://www.x.example/a", []string{"host:www.my-site-234.com", "host:www.x.example"}},
		{"GB00 WEST 1234 5698 7654 32", []string{"number:12345698765432"}},
		{"www. or www.x or swww.example.com", nil},
		{"released 2026-11-26, v1.24.3, build 4821, port 8080", nil},
		{`{"sha":"9d61d24","data":"aGVsbG8gd29ybGQ=","n":12345678}`, nil},
		{"for (i = 0; i < n; i++) { a[i] = b@c; }", nil},
	} {
		if got := found(tc.text); !slices.Equal(got, tc.want) {
			t.Errorf("%q: got %v, want %v", tc.text, got, tc.want)
		}
	}
}
