package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"

	"github.com/spf13/cobra"

	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/gateway"
	"github.com/portcullis-dev/portcullis/internal/ops"
)

func configCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Configuration files"}
	var formOnly bool
	validate := &cobra.Command{
		Use:   "validate FILE",
		Short: "Check a configuration file, the policies it names and what serve will need",
		Long: "Check a configuration file: its form, the policies it names, inline values (no\n" +
			"secrets), and what serve will need where it runs: the files and directories it\n" +
			"names and the secrets it takes from the store. --form-only checks the form and\n" +
			"policies alone, for a configuration checked away from its host.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := config.Load(args[0])
			if err != nil {
				return err
			}
			// Every problem at once: inline values, what the host lacks,
			// the policies.
			errs := []error{gateway.CheckInlineValues(c)}
			if !formOnly {
				errs = append(errs, c.CheckFiles(), checkSecretRefs(c))
			}
			for _, v := range c.Values() {
				if e := v.Value.FromEnv; e != "" {
					if _, ok := os.LookupEnv(e); !ok {
						fmt.Fprintf(cmd.ErrOrStderr(), "note: %s.from_env: %s is not set here; serve needs it where it runs\n", v.Path, e)
					}
				}
			}
			set, _, err := ops.LoadBundle(c)
			if err != nil {
				errs = append(errs, fmt.Errorf("policy: %w", err))
			}
			if err := errors.Join(errs...); err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: valid (version %d, %d agents, %d upstreams, %d policies, policy %s)\n",
				args[0], c.Version, len(c.Agents), len(c.Upstreams), set.Len(), set.Version())
			return nil
		},
	}
	validate.Flags().BoolVar(&formOnly, "form-only", false, "check form and policies only, not the files and secrets the configuration names")
	cmd.AddCommand(validate)
	return cmd
}

// checkSecretRefs reports each from_secret the data directory's secret
// store does not hold (serve would fail on it), without creating a store
// where there is none.
func checkSecretRefs(c *config.Config) error {
	var refs []config.ValueRef
	for _, v := range c.Values() {
		if v.Value.FromSecret != "" {
			refs = append(refs, v)
		}
	}
	if len(refs) == 0 {
		return nil
	}
	var names []string
	if ops.HasStore(c) {
		o, err := ops.Open(c)
		if err != nil {
			return err
		}
		defer o.Close()
		if names, err = o.SecretNames(context.Background()); err != nil {
			return err
		}
	}
	var errs []error
	for _, v := range refs {
		if !slices.Contains(names, v.Value.FromSecret) {
			errs = append(errs, fmt.Errorf("%s.from_secret: no secret %q in %s (`portcullis secret set %s`)", v.Path, v.Value.FromSecret, ops.StoreName(c), v.Value.FromSecret))
		}
	}
	return errors.Join(errs...)
}
