package ops

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/policy"
	"github.com/portcullis-dev/portcullis/internal/reason"
	"github.com/portcullis-dev/portcullis/internal/store"
)

// LoadBundle reads, compiles and (when required) verifies the signature of
// the configured policy bundle.
func LoadBundle(cfg *config.Config) (*policy.Set, []policy.Source, error) {
	srcs, err := LoadPolicies(cfg)
	if err != nil {
		return nil, nil, err
	}
	set, err := policy.Compile(srcs)
	if err != nil {
		return nil, nil, fmt.Errorf("compile policy: %w", err)
	}
	if cfg.Policy.RequireSigned {
		if err := verifyBundle(cfg, set.Version()); err != nil {
			return nil, nil, err
		}
	}
	return set, srcs, nil
}

func verifyBundle(cfg *config.Config, version string) error {
	sig, err := cfg.ReadFile(cfg.Policy.Signature, policy.MaxSignatureBytes)
	if err != nil {
		return fmt.Errorf("policy signature: %w", err)
	}
	var keys []string
	for _, k := range cfg.Policy.TrustedKeys {
		b, err := cfg.ReadFile(k, 4096)
		if err != nil {
			return fmt.Errorf("policy trusted key: %w", err)
		}
		keys = append(keys, string(b))
	}
	return policy.VerifyBundle(version, sig, keys)
}

// LoadPolicies reads the configured policy sources; with no paths the
// bundle is empty and everything is denied.
func LoadPolicies(cfg *config.Config) ([]policy.Source, error) {
	paths := make([]string, len(cfg.Policy.Paths))
	for i, p := range cfg.Policy.Paths {
		paths[i] = cfg.Path(p)
	}
	return policy.ReadSources(paths)
}

// KeptBundle compiles the bundle the store keeps under version (a full
// digest, or a prefix of one that names a single kept bundle).
func KeptBundle(ctx context.Context, st *store.DB, version string) (*policy.Set, []policy.Source, error) {
	kept, err := st.Bundles(ctx)
	if err != nil {
		return nil, nil, err
	}
	var match []string
	for _, b := range kept {
		if b.Version == version || strings.HasPrefix(b.Version, version) && len(version) >= len("sha256:")+8 {
			match = append(match, b.Version)
		}
	}
	switch len(match) {
	case 0:
		return nil, nil, fmt.Errorf("no kept policy bundle %s (`portcullis policy history` lists them)", version)
	case 1:
	default:
		return nil, nil, fmt.Errorf("%s names %d kept bundles: give more of the digest", version, len(match))
	}
	b, err := st.Bundle(ctx, match[0])
	if err != nil {
		return nil, nil, err
	}
	var srcs []policy.Source
	if err := json.Unmarshal(b, &srcs); err != nil {
		return nil, nil, fmt.Errorf("kept bundle %s: %w", match[0], err)
	}
	set, err := policy.Compile(srcs)
	if err != nil {
		return nil, nil, fmt.Errorf("kept bundle %s: %w", match[0], err)
	}
	if set.Version() != match[0] {
		return nil, nil, fmt.Errorf("kept bundle %s compiles to %s: the store was altered", match[0], set.Version())
	}
	return set, srcs, nil
}

// RollbackPolicy makes the gateway serve a kept bundle instead of its
// files until ReleaseRollback: to, or (empty) the bundle kept before the
// last good one. It returns the version rolled back to.
func (o *Ops) RollbackPolicy(ctx context.Context, to, by, why string) (string, error) {
	if err := attributed(by); err != nil {
		return "", err
	}
	if to == "" {
		kept, err := o.st.Bundles(ctx)
		if err != nil {
			return "", err
		}
		cur, ok, err := o.st.PolicyPointer(ctx, store.PolicyLastGood)
		if err != nil {
			return "", err
		}
		if rb, pinned, err := o.st.PolicyPointer(ctx, store.PolicyRollback); err == nil && pinned {
			cur, ok = rb, true // a second rollback goes one further back
		}
		for i := len(kept) - 1; i >= 0; i-- {
			if ok && kept[i].Version == cur.Version {
				if i == 0 {
					return "", errors.New("no bundle was kept before the one in force")
				}
				to = kept[i-1].Version
				break
			}
		}
		if to == "" {
			return "", errors.New("the bundle in force is not among the kept ones: give --to DIGEST (`portcullis policy history`)")
		}
	}
	set, _, err := KeptBundle(ctx, o.st, to)
	if err != nil {
		return "", err
	}
	e := audit.New(audit.TypePolicy, audit.OutcomeInfo, reason.BundleRolledBack, time.Now(), audit.Subject{})
	e.PolicyVersion, e.Detail = set.Version(), fmt.Sprintf("by %s: %s", by, why)
	if err := audit.WriteNow(ctx, o.st, e); err != nil {
		return "", err
	}
	return set.Version(), o.st.SetPolicyPointer(ctx, store.PolicyRollback, set.Version(), by)
}

// ReleaseRollback lets the gateway serve its files again.
func (o *Ops) ReleaseRollback(ctx context.Context, by, why string) error {
	if err := attributed(by); err != nil {
		return err
	}
	p, ok, err := o.st.PolicyPointer(ctx, store.PolicyRollback)
	if err != nil {
		return err
	}
	if !ok {
		return errors.New("no rollback is in force")
	}
	e := audit.New(audit.TypePolicy, audit.OutcomeInfo, reason.BundleRollbackReleased, time.Now(), audit.Subject{})
	e.PolicyVersion, e.Detail = p.Version, fmt.Sprintf("by %s: %s", by, why)
	if err := audit.WriteNow(ctx, o.st, e); err != nil {
		return err
	}
	return o.st.ClearPolicyPointer(ctx, store.PolicyRollback)
}
