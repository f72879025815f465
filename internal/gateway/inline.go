package gateway

import (
	"errors"
	"fmt"

	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/screen"
)

// CheckInlineValues runs the secret detectors over every value written
// inline in cfg (headers, environment variables): a credential in the
// configuration file is readable by whoever reads the file, its backups
// and its history. Each one found is an error naming where it is and the
// detector's rule, never the value. serve refuses to start on them;
// `config validate` reports them.
func CheckInlineValues(cfg *config.Config) error {
	vals := cfg.InlineValues()
	if len(vals) == 0 {
		return nil
	}
	rules, err := screen.DefaultSecretRules()
	if err != nil {
		return fmt.Errorf("secret detectors: %w", err)
	}
	var errs []error
	for _, v := range vals {
		// The name gives keyword rules their context ("X-Api: ...").
		if fs := rules.Detect(v.Name + ": " + v.Value); len(fs) > 0 {
			errs = append(errs, fmt.Errorf("%s: the inline value looks like a secret (%s): give it with from_secret (`portcullis secret set`), from_env or from_file", v, fs[0].Rule))
		}
	}
	return errors.Join(errs...)
}
