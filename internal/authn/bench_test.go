package authn

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/token"
)

var benchAuth = config.Auth{Issuer: "pc", Audience: "gw", MaxTTL: config.Duration(time.Hour)}

func benchKey(b *testing.B) (*token.SigningKey, string) {
	k, err := token.LoadOrCreateKey(filepath.Join(b.TempDir(), "k.pem"))
	if err != nil {
		b.Fatal(err)
	}
	iss, _ := token.NewIssuer(k, "pc", "gw", time.Hour, nil)
	raw, _, _ := iss.Issue("agent", 30*time.Minute)
	return k, raw
}

// BenchmarkAuthenticate is per-request authentication of a token already
// seen (the common case: an agent reuses its token for many calls).
func BenchmarkAuthenticate(b *testing.B) {
	k, raw := benchKey(b)
	a := New(Options{Key: k, Auth: benchAuth, Agents: []config.Agent{{Name: "agent", Roles: []string{"r"}}}})
	r, _ := http.NewRequest("POST", "/mcp", nil)
	r.Header.Set("Authorization", "Bearer "+raw)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.Authenticate(r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAuthenticateTaskDPoP is per-request authentication of a
// sender-constrained task token already seen: the cached token check plus
// a fresh DPoP proof (ES256 signature, claims, replay memory) per request.
// The proofs are made outside the timer.
func BenchmarkAuthenticateTaskDPoP(b *testing.B) {
	k, err := token.LoadOrCreateKey(filepath.Join(b.TempDir(), "k.pem"))
	if err != nil {
		b.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	jkt, _ := token.Thumbprint(key.Public())
	iss, _ := token.NewTypedIssuer(k, token.TypTask, "pc", "gw", time.Hour, nil)
	raw, _, err := iss.IssueTask(token.Task{Agent: "agent", Tools: []string{"u__t"}, Budget: 1 << 30, JKT: jkt}, 30*time.Minute)
	if err != nil {
		b.Fatal(err)
	}
	a := New(Options{Key: k, Auth: benchAuth, Agents: []config.Agent{{Name: "agent"}}})
	const n = 4096
	reqs := make([]*http.Request, n)
	for i := range reqs {
		p, _ := token.Proof(key, jose.ES256, "POST", "http://gw/mcp", raw, fmt.Sprint("j", i, "-", time.Now().UnixNano()), time.Now())
		r, _ := http.NewRequest("POST", "http://gw/mcp", nil)
		r.Header.Set("Authorization", "DPoP "+raw)
		r.Header.Set("DPoP", p)
		reqs[i] = r
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i == n {
			b.StopTimer()
			a.dpop = token.NewDPoPVerifier(nil) // fresh replay memory for reused proofs
			i = 0
			b.StartTimer()
		}
		if _, err := a.Authenticate(reqs[i]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkVerifyToken is a first sight of a token: signature and claims.
func BenchmarkVerifyToken(b *testing.B) {
	k, raw := benchKey(b)
	v := token.NewVerifier(k, "pc", "gw", time.Hour, nil)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(raw); err != nil {
			b.Fatal(err)
		}
	}
}
