// Command portcullis is the Zero Trust control point between AI agents and
// their MCP tool servers. See README.md and docs/.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
)

// CPUProfileEnv names a file to write a CPU profile of the whole run to
// (for performance work: docs/performance.md).
const CPUProfileEnv = "PORTCULLIS_CPUPROFILE"

func main() {
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
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "portcullis:", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}
