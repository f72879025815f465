package authn

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/portcullis-dev/portcullis/internal/store"
)

// A view older than MaxAge counts every credential as revoked until the
// next successful read (a fleet's gateway cut off from the shared store).
func TestStaleRevocationsFailClosed(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rv := &Revocations{MaxAge: 100 * time.Millisecond}
	if !rv.Revoked("a", "jti", "") {
		t.Fatal("an unread view admitted a credential")
	}
	if err := rv.Refresh(context.Background(), st); err != nil {
		t.Fatal(err)
	}
	if rv.Revoked("a", "jti", "") {
		t.Fatal("a fresh view refused an unrevoked credential")
	}
	time.Sleep(150 * time.Millisecond)
	if !rv.Revoked("a", "jti", "") || !rv.Superseded("spiffe://x/a", "1") {
		t.Fatal("a stale view admitted a credential")
	}
	if err := rv.Refresh(context.Background(), st); err != nil {
		t.Fatal(err)
	}
	if rv.Revoked("a", "jti", "") {
		t.Fatal("a view read again still refuses")
	}
	// Without MaxAge (one gateway on its own store) age does not matter.
	plain := &Revocations{}
	plain.Refresh(context.Background(), st)
	time.Sleep(150 * time.Millisecond)
	if plain.Revoked("a", "jti", "") {
		t.Fatal("a view without MaxAge went stale")
	}
}
