package store

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
)

func TestBaselinesGenerations(t *testing.T) {
	ctx := context.Background()
	s, err := Open(filepath.Join(t.TempDir(), "p.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, _, _, err := s.Baselines(ctx); !errors.Is(err, ErrNotFound) {
		t.Fatalf("empty: %v", err)
	}
	// The gateway saves over its own generation (0 at first).
	if ok, err := s.SaveBaselines(ctx, 0, []byte("a")); !ok || err != nil {
		t.Fatalf("first save: %v %v", ok, err)
	}
	if ok, _ := s.SaveBaselines(ctx, 0, []byte("b")); !ok {
		t.Fatal("second save refused")
	}
	// A restore bumps the generation: the gateway's next save is refused.
	gen, err := s.RestoreBaselines(ctx, []byte("restored"))
	if err != nil || gen != 1 {
		t.Fatalf("restore: %d %v", gen, err)
	}
	if ok, _ := s.SaveBaselines(ctx, 0, []byte("stale")); ok {
		t.Fatal("a stale generation overwrote a restore")
	}
	g, body, _, err := s.Baselines(ctx)
	if err != nil || g != 1 || string(body) != "restored" {
		t.Fatalf("after restore: %d %q %v", g, body, err)
	}
	if ok, _ := s.SaveBaselines(ctx, 1, []byte("c")); !ok {
		t.Fatal("save at the new generation refused")
	}
	if g, _, _, _ := s.Baselines(ctx); g != 1 {
		t.Fatalf("generation %d", g)
	}
}
