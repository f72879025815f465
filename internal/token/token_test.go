package token

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
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

func TestDPoP(t *testing.T) {
	t.Parallel()
	key, _ := ecdsaKey()
	now := time.Unix(1_800_000_000, 0)
	v := NewDPoPVerifier(func() time.Time { return now })
	tp, _ := Thumbprint(key.Public())
	p, _ := Proof(key, jose.ES256, "POST", "https://gw/mcp", "tok", "j1", now)
	if got, err := v.Verify(p, "POST", "https://gw/mcp", "tok"); err != nil || got != tp {
		t.Fatalf("valid proof: %v %s", err, got)
	}
	if _, err := v.Verify(p, "POST", "https://gw/mcp", "tok"); err == nil {
		t.Error("replay accepted")
	}
	for name, tc := range map[string]struct {
		method, url, tok string
		at               time.Time
	}{
		"other method": {"GET", "https://gw/mcp", "tok", now},
		"other url":    {"POST", "https://evil/mcp", "tok", now},
		"other token":  {"POST", "https://gw/mcp", "tok2", now},
		"stale":        {"POST", "https://gw/mcp", "tok", now.Add(-5 * time.Minute)},
	} {
		p, _ := Proof(key, jose.ES256, "POST", "https://gw/mcp", "tok", "j-"+name, tc.at)
		if _, err := v.Verify(p, tc.method, tc.url, tc.tok); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func ecdsaKey() (*ecdsa.PrivateKey, error) { return ecdsa.GenerateKey(elliptic.P256(), rand.Reader) }

func TestTaskTokens(t *testing.T) {
	t.Parallel()
	k := newKey(t)
	iss, _ := NewTypedIssuer(k, TypTask, "pc", "gw", time.Hour, nil)
	v := NewTypedVerifier(k, TypTask, "pc", "gw", time.Hour, nil)
	if _, _, err := iss.IssueTask(Task{Agent: "a", Tools: []string{"u__t"}, Budget: 1}, time.Minute); err == nil {
		t.Error("task token without a key binding issued")
	}
	raw, task, err := iss.IssueTask(Task{Agent: "a", User: "alice", Tools: []string{"u__t"}, Budget: 5, JKT: "thumb"}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	got, err := v.VerifyTask(raw)
	if err != nil || got.ID != task.ID || got.JKT != "thumb" || got.Budget != 5 || got.User != "alice" {
		t.Fatalf("verify: %+v %v", got, err)
	}
	// An agent token is not a task token, nor the reverse.
	agentIss, _ := NewIssuer(k, "pc", "gw", time.Hour, nil)
	agentTok, _, _ := agentIss.Issue("a", time.Minute)
	if _, err := v.VerifyTask(agentTok); err == nil {
		t.Error("agent token accepted as a task token")
	}
	if _, err := NewVerifier(k, "pc", "gw", time.Hour, nil).Verify(raw); err == nil {
		t.Error("task token accepted as an agent token")
	}
}

func TestIntentTokens(t *testing.T) {
	k := newKey(t)
	iss, err := NewTypedIssuer(k, TypIntent, "iss", "aud", time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, in := range map[string]Intent{"no agent": {Text: "x"}, "no text": {Agent: "a"}, "too long": {Agent: "a", Text: strings.Repeat("x", MaxIntentBytes+1)}} {
		if _, _, err := iss.IssueIntent(in, time.Minute); err == nil {
			t.Errorf("%s: issued", name)
		}
	}
	if _, _, err := iss.IssueIntent(Intent{Agent: "a", Text: "x"}, 2*time.Hour); err == nil {
		t.Error("ttl over the maximum issued")
	}
	raw, in, err := iss.IssueIntent(Intent{Agent: "a", User: "alice", Text: "pay the rent"}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	got, err := NewTypedVerifier(k, TypIntent, "iss", "aud", time.Hour, nil).VerifyIntent(raw)
	if err != nil || got.Agent != "a" || got.User != "alice" || got.Text != "pay the rent" || got.TokenID != in.TokenID {
		t.Fatalf("verify: %+v %v", got, err)
	}
	// Not a task token, not an agent token; another audience or key; expired.
	if _, err := NewTypedVerifier(k, TypTask, "iss", "aud", time.Hour, nil).VerifyTask(raw); err == nil {
		t.Error("an intent verified as a task token")
	}
	if _, err := NewVerifier(k, "iss", "aud", time.Hour, nil).Verify(raw); err == nil {
		t.Error("an intent verified as an agent token")
	}
	if _, err := NewTypedVerifier(k, TypIntent, "iss", "other", time.Hour, nil).VerifyIntent(raw); err == nil {
		t.Error("another audience accepted")
	}
	if _, err := NewTypedVerifier(newKey(t), TypIntent, "iss", "aud", time.Hour, nil).VerifyIntent(raw); err == nil {
		t.Error("another key accepted")
	}
	later := func() time.Time { return time.Now().Add(time.Hour) }
	if _, err := NewTypedVerifier(k, TypIntent, "iss", "aud", time.Hour, later).VerifyIntent(raw); !errors.Is(err, ErrExpired) {
		t.Errorf("expired: %v", err)
	}
	agentTok, _, _ := mustIssuer(t, k, "iss", "aud").Issue("a", time.Minute)
	if _, err := NewTypedVerifier(k, TypIntent, "iss", "aud", time.Hour, nil).VerifyIntent(agentTok); err == nil {
		t.Error("an agent token verified as an intent")
	}
}
