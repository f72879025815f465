package demo

import (
	"os"
	"path/filepath"
	"testing"
)

func TestPathsAreConfinedToTheDemoFolder(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	root := filepath.Join(dir, "demo")
	s, err := New(root)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "secret.txt"), []byte("secret"), 0o600)
	os.Symlink(filepath.Join(dir, "secret.txt"), filepath.Join(root, "escape"))
	if b, err := s.read("notes/todo.txt"); err != nil || len(b) == 0 {
		t.Fatalf("read inside: %v", err)
	}
	for _, p := range []string{"../secret.txt", "/etc/passwd", "notes/../../secret.txt", "escape", "", "a\x00b"} {
		if _, err := s.read(p); err == nil {
			t.Errorf("read %q escaped the demo folder", p)
		}
	}
}
