package authn

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/store"
	"github.com/portcullis-dev/portcullis/internal/token"
)

type revocationStore map[string]map[string]bool

func (r revocationStore) Revocations(context.Context) (map[string]map[string]bool, error) {
	return r, nil
}

func (r revocationStore) Instances(context.Context) ([]store.Instance, error) { return nil, nil }

func request(t *testing.T, k *token.SigningKey, agent string) *http.Request {
	t.Helper()
	iss, err := token.NewIssuer(k, "pc", "gw", time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	raw, _, err := iss.Issue(agent, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	r, _ := http.NewRequest("POST", "/mcp", nil)
	r.Header.Set("Authorization", "Bearer "+raw)
	return r
}

// TestRevocationsFailClosed: until revocations have been read, every
// credential counts as revoked; then exactly the revoked ones are refused.
func TestRevocationsFailClosed(t *testing.T) {
	t.Parallel()
	k, err := token.LoadOrCreateKey(filepath.Join(t.TempDir(), "k.pem"))
	if err != nil {
		t.Fatal(err)
	}
	revs := &Revocations{}
	a := New(Options{Key: k, Auth: benchAuth, Agents: []config.Agent{{Name: "reader"}, {Name: "mailer"}}, Revocations: revs})
	if _, err := a.Authenticate(request(t, k, "reader")); err == nil {
		t.Fatal("authenticated before revocations were read")
	}
	st := revocationStore{store.RevokeAgent: {"mailer": true}}
	if err := revs.Refresh(context.Background(), st); err != nil {
		t.Fatal(err)
	}
	if p, err := a.Authenticate(request(t, k, "reader")); err != nil || p.Agent != "reader" {
		t.Fatalf("reader: %v %v", p, err)
	}
	if _, err := a.Authenticate(request(t, k, "mailer")); err == nil {
		t.Fatal("a revoked agent authenticated")
	}
}

// TestUnconfiguredAgent: a valid token for an agent the configuration no
// longer declares is refused as such; a request without credentials is
// refused.
func TestUnconfiguredAgent(t *testing.T) {
	t.Parallel()
	k, err := token.LoadOrCreateKey(filepath.Join(t.TempDir(), "k.pem"))
	if err != nil {
		t.Fatal(err)
	}
	a := New(Options{Key: k, Auth: benchAuth, Agents: []config.Agent{{Name: "reader"}}})
	if _, err := a.Authenticate(request(t, k, "gone")); !errors.Is(err, config.ErrUnknownAgent) {
		t.Errorf("token of an undeclared agent: %v", err)
	}
	r, _ := http.NewRequest("POST", "/mcp", nil)
	if _, err := a.Authenticate(r); err == nil {
		t.Error("a request without credentials authenticated")
	}
}

// TestSuperseded: only the recorded serial of an instance is current; an
// SVID just issued is current at once.
func TestSuperseded(t *testing.T) {
	t.Parallel()
	revs := &Revocations{}
	if !revs.Superseded("spiffe://td/agent/a/1", "01") {
		t.Error("current before revocations were read")
	}
	st := revocationsWithInstances{revocationStore{}, []store.Instance{{SPIFFEID: "spiffe://td/agent/a/1", Serial: "01"}}}
	if err := revs.Refresh(context.Background(), st); err != nil {
		t.Fatal(err)
	}
	if revs.Superseded("spiffe://td/agent/a/1", "01") || !revs.Superseded("spiffe://td/agent/a/1", "02") || !revs.Superseded("spiffe://td/agent/b/1", "01") {
		t.Error("after refresh")
	}
	revs.Enrolled("spiffe://td/agent/a/1", "02")
	if !revs.Superseded("spiffe://td/agent/a/1", "01") || revs.Superseded("spiffe://td/agent/a/1", "02") {
		t.Error("after a rotation")
	}
}

type revocationsWithInstances struct {
	revocationStore
	ins []store.Instance
}

func (r revocationsWithInstances) Instances(context.Context) ([]store.Instance, error) {
	return r.ins, nil
}

// TestProofNamesThePublicURL: behind a TLS proxy (listen.public_url) a
// DPoP proof names the URL the client used, not the listener's.
func TestProofNamesThePublicURL(t *testing.T) {
	k, _ := token.LoadOrCreateKey(filepath.Join(t.TempDir(), "k.pem"))
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	want, _ := token.Thumbprint(key.Public())
	a := New(Options{Key: k, Auth: benchAuth, PublicURL: "https://gw.example.com/"})
	for i, tc := range []struct {
		htu string
		ok  bool
	}{{"https://gw.example.com/oauth/token", true}, {"http://10.0.0.5:8470/oauth/token", false}} {
		r := httptest.NewRequest(http.MethodPost, "http://10.0.0.5:8470/oauth/token", nil)
		p, _ := token.Proof(key, jose.ES256, http.MethodPost, tc.htu, "", fmt.Sprint("j", i), time.Now())
		r.Header.Set("DPoP", p)
		got, err := a.ProveKey(r)
		if (err == nil) != tc.ok || (tc.ok && got != want) {
			t.Errorf("htu %s: %q %v", tc.htu, got, err)
		}
	}
}
