package token

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

func newKey(t testing.TB) *SigningKey {
	t.Helper()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	k, err := NewSigningKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestIssueAndVerify(t *testing.T) {
	t.Parallel()
	k := newKey(t)
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	iss, err := NewIssuer(k, "pc", "gw", time.Hour, clock)
	if err != nil {
		t.Fatal(err)
	}
	v := NewVerifier(k, "pc", "gw", time.Hour, clock)
	raw, c, err := iss.Issue("agent-1", 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	got, err := v.Verify(raw)
	if err != nil || got.Agent != "agent-1" || got.ID != c.ID || !got.Expires.Equal(now.Add(10*time.Minute)) {
		t.Fatalf("verify: %+v %v", got, err)
	}
	if _, _, err := iss.Issue("agent-1", 2*time.Hour); err == nil {
		t.Error("issued beyond max TTL")
	}
	now = now.Add(10*time.Minute + Leeway + time.Second)
	if _, err := v.Verify(raw); !errors.Is(err, ErrExpired) {
		t.Errorf("expired token: %v", err)
	}
}

func TestVerifyRefuses(t *testing.T) {
	t.Parallel()
	k, other := newKey(t), newKey(t)
	iss, _ := NewIssuer(k, "pc", "gw", time.Hour, nil)
	good, _, _ := iss.Issue("a", time.Minute)
	otherIss, _ := NewIssuer(other, "pc", "gw", time.Hour, nil)
	foreign, _, _ := otherIss.Issue("a", time.Minute)
	wrongAud, _, _ := mustIssuer(t, k, "pc", "elsewhere").Issue("a", time.Minute)
	wrongIss, _, _ := mustIssuer(t, k, "evil", "gw").Issue("a", time.Minute)
	// Signed by the right key, but with a lifetime beyond what the
	// verifier accepts (e.g. minted by a misconfigured issuer).
	long, _, _ := func() (string, Claims, error) {
		i, _ := NewIssuer(k, "pc", "gw", 48*time.Hour, nil)
		return i.Issue("a", 24*time.Hour)
	}()
	// Right key, no typ header (could be some other JWT of ours).
	s, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: k.priv}, (&jose.SignerOptions{}).WithHeader("kid", k.kid))
	noTyp, _ := jwt.Signed(s).Claims(jwt.Claims{Subject: "a", Issuer: "pc", Audience: jwt.Audience{"gw"}, ID: "x",
		IssuedAt: jwt.NewNumericDate(time.Now()), Expiry: jwt.NewNumericDate(time.Now().Add(time.Minute))}).Serialize()
	parts := strings.Split(good, ".")
	v := NewVerifier(k, "pc", "gw", time.Hour, nil)
	for name, raw := range map[string]string{
		"empty": "", "garbage": "abc", "foreign key": foreign, "wrong audience": wrongAud, "wrong issuer": wrongIss,
		"too long-lived": long, "no typ": noTyp, "alg none": "eyJhbGciOiJub25lIn0." + parts[1] + ".",
		"swapped payload": parts[0] + "." + strings.Split(foreign, ".")[1] + "." + parts[2],
		"huge":            strings.Repeat("a", MaxTokenBytes+1),
	} {
		if _, err := v.Verify(raw); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func mustIssuer(t *testing.T, k *SigningKey, iss, aud string) *Issuer {
	i, err := NewIssuer(k, iss, aud, time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	return i
}

func TestKeyPersistence(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "keys", "k.pem")
	a, err := LoadOrCreateKey(p)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(p)
	if st.Mode().Perm() != 0o600 {
		t.Errorf("key mode %v", st.Mode().Perm())
	}
	b, err := LoadOrCreateKey(p)
	if err != nil || b.KeyID() != a.KeyID() {
		t.Fatalf("reload: %v %s %s", err, a.KeyID(), b.KeyID())
	}
	if len(a.JWKS().Keys) != 1 || a.JWKS().Keys[0].KeyID != a.KeyID() {
		t.Error("JWKS does not publish the key")
	}
}

// FuzzVerify: arbitrary bytes never panic and never verify.
func FuzzVerify(f *testing.F) {
	k := newKey(f)
	iss, _ := NewIssuer(k, "pc", "gw", time.Hour, nil)
	good, _, _ := iss.Issue("a", time.Minute)
	f.Add(good)
	f.Add("a.b.c")
	f.Add("eyJhbGciOiJFZERTQSJ9.e30.")
	v := NewVerifier(k, "pc", "gw", time.Hour, nil)
	f.Fuzz(func(t *testing.T, raw string) {
		if _, err := v.Verify(raw); err == nil && raw != good {
			t.Fatalf("verified a token the issuer never made: %q", raw)
		}
	})
}
