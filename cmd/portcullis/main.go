// Command portcullis is the Zero Trust control point between AI agents and
// their MCP tool servers. See README.md and docs/.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/portcullis-dev/portcullis/internal/sandbox"
)

// CPUProfileEnv names a file to write a CPU profile of the whole run to
// (for performance work: docs/performance.md).
const CPUProfileEnv = "PORTCULLIS_CPUPROFILE"

// MemProfileEnv names a file to write a heap profile to when the process
// ends (every allocation sampled since the start: pprof -sample_index
// alloc_space).
const MemProfileEnv = "PORTCULLIS_MEMPROFILE"

func main() {
	sandbox.Main() // this process may be a sandboxed server's init: it never returns then
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if path := os.Getenv(CPUProfileEnv); path != "" {
		f, err := os.Create(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, "portcullis:", err)
			os.Exit(1)
		}
		pprof.StartCPUProfile(f)
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	if path := os.Getenv(MemProfileEnv); path != "" {
		defer writeHeapProfile(path)
	}
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "portcullis:", err)
		pprof.StopCPUProfile()
		if path := os.Getenv(MemProfileEnv); path != "" {
			writeHeapProfile(path)
		}
		code := 1
		var st *exitStatus
		if errors.As(err, &st) {
			code = st.code
		}
		os.Exit(code)
	}
}

// exitStatus is a command's outcome that is not an error of the command
// but a finding CI acts on (a replayed decision that differs): a message
// and an exit status other than 1.
type exitStatus struct {
	code int
	msg  string
}

func (e *exitStatus) Error() string { return e.msg }

// ExitDecisionDiffers is `audit replay`'s exit status when the current
// policy decides the replayed request differently.
const ExitDecisionDiffers = 3

// writeHeapProfile writes the heap profile to path (performance work).
func writeHeapProfile(path string) {
	f, err := os.Create(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "portcullis:", err)
		return
	}
	defer f.Close()
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		fmt.Fprintln(os.Stderr, "portcullis: heap profile:", err)
	}
}
