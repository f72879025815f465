// Package buildinfo says which build of Portcullis is running: the release
// version and source revision stamped at build time (scripts/build.sh:
// -ldflags "-X github.com/portcullis-dev/portcullis/internal/buildinfo.version=..."),
// and the revision, its time and whether the tree was modified, which the
// Go toolchain records in a binary built from a git checkout (unless
// -buildvcs=false).
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"sync"
)

// version and revision are set at build time (empty for a plain go
// build); the revision the toolchain records, when it does, comes first.
var version, revision string

// Info describes the running binary.
type Info struct {
	Version  string // release version, or "dev"
	Revision string // source revision (git commit), if recorded
	Time     string // the revision's commit time (RFC 3339), if recorded
	Modified bool   // built from a tree with uncommitted changes
	Go       string // Go toolchain
	Platform string // GOOS/GOARCH
}

var read = sync.OnceValue(func() Info {
	in := Info{Version: version, Revision: revision, Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	bi, ok := debug.ReadBuildInfo()
	if ok {
		if in.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			in.Version = bi.Main.Version // go install module@version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				in.Revision = s.Value
			case "vcs.time":
				in.Time = s.Value
			case "vcs.modified":
				in.Modified = s.Value == "true"
			}
		}
	}
	if in.Version == "" {
		in.Version = "dev"
	}
	return in
})

// Read returns the running binary's build information.
func Read() Info { return read() }

// Version is the short version: the release, or "dev" with the revision
// (dev+1a2b3c4d5e6f, marked -modified for a changed tree).
func Version() string {
	in := Read()
	v := in.Version
	if v == "dev" && in.Revision != "" {
		v += "+" + short(in.Revision)
		if in.Modified {
			v += "-modified"
		}
	}
	return v
}

// String is the long form printed by `portcullis --version`.
func (in Info) String() string {
	s := "portcullis " + Version()
	if in.Revision != "" {
		s += fmt.Sprintf("\n  commit    %s", in.Revision)
		if in.Modified {
			s += " (modified)"
		}
		if in.Time != "" {
			s += fmt.Sprintf("\n  committed %s", in.Time)
		}
	}
	return s + fmt.Sprintf("\n  built by  %s for %s", in.Go, in.Platform)
}

func short(rev string) string {
	if len(rev) > 12 {
		return rev[:12]
	}
	return rev
}
