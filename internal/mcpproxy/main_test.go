package mcpproxy

import (
	"os"
	"testing"

	"github.com/portcullis-dev/portcullis/internal/sandbox"
)

// TestMain lets this test binary be a sandboxed server's init (the
// gateway's stdio upstreams run in the built-in sandbox).
func TestMain(m *testing.M) {
	sandbox.Main()
	os.Exit(m.Run())
}
