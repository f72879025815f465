package buildinfo

import (
	"strings"
	"testing"
)

// A stamped release reads as itself; an unstamped build as dev with its
// revision, when one is known.
func TestVersion(t *testing.T) {
	in := Read()
	if in.Go == "" || in.Platform == "" || !strings.Contains(in.String(), "built by  "+in.Go) {
		t.Fatalf("%+v", in)
	}
	if version == "" && !strings.HasPrefix(Version(), "dev") {
		t.Fatalf("unstamped build reads %q", Version())
	}
	read = func() Info {
		return Info{Version: "v1.4.0", Revision: "0123456789abcdef0123", Go: "go1.26.8", Platform: "linux/amd64"}
	}
	if Version() != "v1.4.0" || !strings.Contains(Read().String(), "commit    0123456789abcdef0123") {
		t.Fatalf("stamped: %q %q", Version(), Read().String())
	}
	read = func() Info { return Info{Version: "dev", Revision: "0123456789abcdef0123", Modified: true} }
	if Version() != "dev+0123456789ab-modified" {
		t.Fatalf("dev build: %q", Version())
	}
}
