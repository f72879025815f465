package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/ops"
	"github.com/portcullis-dev/portcullis/internal/reason"
)

// ReloadPolicy loads the configured bundle and, if it is valid (and signed
// when required) and differs from the one in force, swaps it in atomically.
// A bundle that fails leaves the last good one serving. Either way the
// outcome is audited.
func (g *Gateway) ReloadPolicy(ctx context.Context) error {
	set, srcs, err := ops.LoadBundle(g.cfg)
	if err != nil {
		e := audit.New(audit.TypePolicy, audit.OutcomeError, reason.BundleRejected, time.Now(), audit.Subject{})
		e.PolicyVersion, e.Detail = g.engine.Version(), truncateErr(err)
		g.log.Error("policy bundle rejected; the previous one keeps serving", "err", err)
		g.submit(e)
		return err
	}
	if set.Version() == g.engine.Version() {
		return nil
	}
	if err := ops.SaveBundle(ctx, g.store, set, srcs); err != nil {
		return err
	}
	old := g.engine.Swap(set)
	e := audit.New(audit.TypePolicy, audit.OutcomeInfo, reason.BundleLoaded, time.Now(), audit.Subject{})
	e.PolicyVersion = set.Version()
	e.Detail = fmt.Sprintf("replaces %s; %d policies", old.Version(), set.Len())
	g.log.Info("policy bundle loaded", "version", set.Version(), "policies", set.Len())
	g.submit(e)
	return nil
}

func truncateErr(err error) string {
	s := err.Error()
	if len(s) > 1000 {
		s = s[:1000] + "…"
	}
	return s
}

func (g *Gateway) submit(e *audit.Event) {
	if err := g.recorder.Submit(e); err != nil {
		g.log.Error("audit event lost", "type", e.Type, "err", err)
	}
}

// watchPolicy reloads the bundle on SIGHUP and when its files change.
func (g *Gateway) watchPolicy(ctx context.Context) error {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	tick := time.NewTicker(g.cfg.Policy.ReloadInterval.D())
	defer tick.Stop()
	last := g.policyFingerprint()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-hup:
			g.ReloadPolicy(ctx)
			last = g.policyFingerprint()
		case <-tick.C:
			if fp := g.policyFingerprint(); fp != last {
				last = fp
				g.ReloadPolicy(ctx)
			}
		}
	}
}

// policyFingerprint changes when any policy file, the signature or a trusted
// key changes (name, size or modification time).
func (g *Gateway) policyFingerprint() string {
	h := sha256.New()
	paths := append([]string{}, g.cfg.Policy.Paths...)
	if g.cfg.Policy.Signature != "" {
		paths = append(paths, g.cfg.Policy.Signature)
	}
	paths = append(paths, g.cfg.Policy.TrustedKeys...)
	for _, p := range paths {
		filepath.WalkDir(g.cfg.Path(p), func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				fmt.Fprintf(h, "%s:err\n", path)
				return nil
			}
			if info, err := d.Info(); err == nil && !d.IsDir() {
				fmt.Fprintf(h, "%s:%d:%d\n", path, info.Size(), info.ModTime().UnixNano())
			}
			return nil
		})
	}
	return hex.EncodeToString(h.Sum(nil))
}
