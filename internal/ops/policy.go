package ops

import (
	"fmt"

	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/policy"
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
