package ops

import (
	"context"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/memory"
)

// Memory is the built-in memory as operators reach it (`portcullis memory
// ...`): versions, quarantine, release, purge, rollback. Every change is
// committed to the audit log from this process, attributed to the
// operator; a running gateway reads the new versions' hashes from the log.
func (o *Ops) Memory() *memory.Service {
	return memory.New(memory.Options{
		Store:  o.st,
		Record: func(ctx context.Context, e *audit.Event) error { return audit.WriteNow(ctx, o.st, e) },
		Alert:  func(*audit.Event) {}, // recorded by the service itself; the gateway raises alerts on agents' reads
		Shared: o.cfg.Memory.Shared,
	})
}
