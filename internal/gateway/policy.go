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
	"github.com/portcullis-dev/portcullis/internal/policy"
	"github.com/portcullis-dev/portcullis/internal/reason"
	"github.com/portcullis-dev/portcullis/internal/store"
)

// startingBundle is the bundle the gateway starts with: the one an
// operator rolled back to, if any; else the configured files (kept in the
// store and marked the last good); else, when the files are rejected, the
// last good bundle the store kept (a rejected edit is not an outage),
// audited as such. With neither, the files' error.
func (g *Gateway) startingBundle(files *policy.Set, srcs []policy.Source, filesErr error) (*policy.Set, error) {
	ctx := context.Background()
	if rb, ok, err := g.store.PolicyPointer(ctx, store.PolicyRollback); err != nil {
		return nil, err
	} else if ok {
		set, _, err := ops.KeptBundle(ctx, g.store, rb.Version)
		if err != nil {
			return nil, fmt.Errorf("policy rolled back to %s by %s: %w", rb.Version, rb.By, err)
		}
		g.log.Warn("serving the policy bundle rolled back to; the files are not applied until `portcullis policy rollback --release`", "version", rb.Version, "by", rb.By)
		g.rolledBack.Store(true)
		return set, nil
	}
	if filesErr == nil {
		if err := ops.SaveBundle(ctx, g.store, files, srcs); err != nil {
			return nil, err
		}
		return files, g.store.SetPolicyPointer(ctx, store.PolicyLastGood, files.Version(), "portcullis-gateway")
	}
	lg, ok, err := g.store.PolicyPointer(ctx, store.PolicyLastGood)
	if err != nil || !ok {
		return nil, filesErr
	}
	set, _, err := ops.KeptBundle(ctx, g.store, lg.Version)
	if err != nil {
		return nil, fmt.Errorf("%w (and the last good bundle: %v)", filesErr, err)
	}
	e := audit.New(audit.TypePolicy, audit.OutcomeError, reason.BundleLastGood, time.Now(), audit.Subject{})
	e.PolicyVersion, e.Detail = set.Version(), "the configured bundle was rejected; serving the last good one. "+truncateErr(filesErr)
	if err := audit.WriteNow(ctx, g.store, e); err != nil {
		return nil, err
	}
	g.log.Error("policy bundle rejected at start; serving the last good one", "version", set.Version(), "err", filesErr)
	return set, nil
}

// ReloadPolicy applies a rollback an operator made (or released) and
// otherwise loads the configured bundle: if it is valid (and signed when
// required) and differs from the one in force, it is swapped in
// atomically and becomes the last good one. A bundle that fails leaves the
// last good one serving. Every change is audited.
func (g *Gateway) ReloadPolicy(ctx context.Context) error {
	rb, pinned, err := g.store.PolicyPointer(ctx, store.PolicyRollback)
	if err != nil {
		return err // the store is down: keep what serves
	}
	if pinned {
		if rb.Version == g.engine.Version() {
			return nil
		}
		set, _, err := ops.KeptBundle(ctx, g.store, rb.Version)
		if err != nil {
			g.log.Error("the bundle rolled back to cannot be loaded; the one in force keeps serving", "version", rb.Version, "err", err)
			return err
		}
		g.swap(set, fmt.Sprintf("rolled back by %s", rb.By))
		return nil
	}
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
	if err := g.store.SetPolicyPointer(ctx, store.PolicyLastGood, set.Version(), "portcullis-gateway"); err != nil {
		return err
	}
	g.swap(set, "from the configured files")
	return nil
}

// swap puts set in force and audits it.
func (g *Gateway) swap(set *policy.Set, how string) {
	old := g.engine.Swap(set)
	e := audit.New(audit.TypePolicy, audit.OutcomeInfo, reason.BundleLoaded, time.Now(), audit.Subject{})
	e.PolicyVersion = set.Version()
	e.Detail = fmt.Sprintf("%s; replaces %s; %d policies", how, old.Version(), set.Len())
	g.log.Info("policy bundle loaded", "version", set.Version(), "policies", set.Len(), "how", how)
	g.submit(e)
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
	seen := last // the files as the last tick found them
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-hup:
			g.ReloadPolicy(ctx)
			last = g.policyFingerprint()
			seen = last
			continue
		case <-tick.C:
		case <-g.policyKick: // a fleet's change feed: a pointer moved
		}
		// The files changed, or an operator rolled back (or released): one
		// small query a tick.
		// Changed files are loaded once they held still for a tick: a file
		// being written (truncated, half written) is not a bundle to serve.
		fp := g.policyFingerprint()
		settled := fp != last && fp == seen
		seen = fp
		rb, pinned, _ := g.store.PolicyPointer(ctx, store.PolicyRollback)
		if settled || pinned && rb.Version != g.engine.Version() || !pinned && g.rolledBack.Load() {
			last = fp
			g.rolledBack.Store(pinned)
			g.ReloadPolicy(ctx)
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
