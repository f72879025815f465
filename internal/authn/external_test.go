package authn

import (
	"encoding/base64"
	"strings"
	"testing"
)

func TestIssuerOf(t *testing.T) {
	enc := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	for raw, want := range map[string]string{
		"h." + enc(`{"iss":"https://idp.example.com"}`) + ".s": "https://idp.example.com",
		"h." + enc(`{"sub":"x"}`) + ".s":                       "",
		"h." + enc(`not json`) + ".s":                          "",
		"h.!!!.s":                                              "",
		"only.two":                                             "",
		"h." + strings.Repeat("A", 20000) + ".s":               "",
		"":                                                     "",
	} {
		if got := issuerOf(raw); got != want {
			t.Errorf("issuerOf(%.40q) = %q, want %q", raw, got, want)
		}
	}
}

func FuzzIssuerOf(f *testing.F) {
	f.Add("a.eyJpc3MiOiJ4In0.b")
	f.Fuzz(func(t *testing.T, raw string) { _ = issuerOf(raw) })
}
