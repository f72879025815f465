package main

import (
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/portcullis-dev/portcullis/internal/authn"
	"github.com/portcullis-dev/portcullis/internal/identity"
	"github.com/portcullis-dev/portcullis/internal/ops"
	"github.com/portcullis-dev/portcullis/internal/store"
)

// revokeCmd is `<noun> revoke VALUE` for tokens, tasks and agents.
func revokeCmd(kind, what string) *cobra.Command {
	var src source
	var by, reason string
	cmd := &cobra.Command{
		Use:   "revoke " + what,
		Short: "Revoke " + map[string]string{store.RevokeToken: "one credential (by its ID)", store.RevokeTask: "a task and every token delegated within it", store.RevokeAgent: "every credential of an agent"}[kind],
		Args:  cobra.ExactArgs(1),
		RunE: src.run(func(cmd *cobra.Command, args []string, o *ops.Ops) error {
			by, err := actor(by)
			if err != nil {
				return err
			}
			if err := o.Revoke(cmd.Context(), kind, args[0], by, reason); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s %s revoked; a running gateway refuses it within %s\n", kind, args[0], authn.RevocationRefresh)
			return nil
		}),
	}
	src.flags(cmd)
	cmd.Flags().StringVar(&by, "by", "", "who revokes (default: $USER)")
	cmd.Flags().StringVar(&reason, "reason", "", "why (recorded in the audit log)")
	return cmd
}

// unrevokeCmd is `<noun> unrevoke VALUE`: an operator's undo of a
// revocation (theirs, or a response step's).
func unrevokeCmd(kind, what string) *cobra.Command {
	var src source
	var by, reason string
	cmd := &cobra.Command{
		Use:   "unrevoke " + what,
		Short: "Lift a revocation (yours, or a response step's); audited",
		Args:  cobra.ExactArgs(1),
		RunE: src.run(func(cmd *cobra.Command, args []string, o *ops.Ops) error {
			by, err := actor(by)
			if err != nil {
				return err
			}
			if err := o.Unrevoke(cmd.Context(), kind, args[0], by, reason); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s %s no longer revoked; a running gateway accepts it again within %s\n", kind, args[0], authn.RevocationRefresh)
			return nil
		}),
	}
	src.flags(cmd)
	cmd.Flags().StringVar(&by, "by", "", "who (default: $USER)")
	cmd.Flags().StringVar(&reason, "reason", "", "why (recorded in the audit log)")
	return cmd
}

func agentCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "agent", Short: "Agent identities: join tokens, enrolment, rotation, revocation"}
	var jsrc source
	var agent, by string
	join := &cobra.Command{
		Use:   "join-token --agent NAME",
		Short: "Create a one-time, short-lived join token for enrolling an instance of an agent",
		Args:  cobra.NoArgs,
		RunE: jsrc.run(func(cmd *cobra.Command, _ []string, o *ops.Ops) error {
			who, err := actor(by)
			if err != nil {
				return err
			}
			tok, exp, err := o.CreateJoinToken(cmd.Context(), agent, who)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), tok)
			fmt.Fprintf(cmd.ErrOrStderr(), "valid once, until %s\n", exp.Local().Format(time.RFC3339))
			return nil
		}),
	}
	jsrc.flags(join)
	join.Flags().StringVar(&by, "by", "", "who creates it (default: $USER)")
	join.Flags().StringVar(&agent, "agent", "", "the agent")

	var gw, jt, ca, dir string
	enrol := &cobra.Command{
		Use:   "enrol --gateway https://HOST:PORT --join-token T --ca BUNDLE.pem --dir DIR",
		Short: "(agent side) Create a key, enrol with a join token, store the X.509-SVID in DIR",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pool, err := bundle(ca)
			if err != nil {
				return err
			}
			id, err := identity.Enrol(cmd.Context(), gw, pool, jt, dir)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "enrolled as %s; key and SVID in %s\n", id, dir)
			return nil
		},
	}
	enrol.Flags().StringVar(&gw, "gateway", "", "the gateway's base URL (https)")
	enrol.Flags().StringVar(&jt, "join-token", "", "the one-time join token")
	enrol.Flags().StringVar(&ca, "ca", "", "the gateway CA bundle, obtained out of band")
	enrol.Flags().StringVar(&dir, "dir", "", "where to keep the key and SVID")

	rotate := &cobra.Command{
		Use:   "rotate --gateway https://HOST:PORT --ca BUNDLE.pem --dir DIR",
		Short: "(agent side) Replace the SVID in DIR before it expires, with a new key",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pool, err := bundle(ca)
			if err != nil {
				return err
			}
			id, err := identity.Rotate(cmd.Context(), gw, pool, dir)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "rotated %s\n", id)
			return nil
		},
	}
	rotate.Flags().StringVar(&gw, "gateway", "", "the gateway's base URL (https)")
	rotate.Flags().StringVar(&ca, "ca", "", "the gateway CA bundle")
	rotate.Flags().StringVar(&dir, "dir", "", "the agent's identity directory")

	var lsrc source
	list := &cobra.Command{
		Use:   "list",
		Short: "List enrolled agent instances and their SVIDs",
		Args:  cobra.NoArgs,
		RunE: lsrc.run(func(cmd *cobra.Command, _ []string, o *ops.Ops) error {
			ins, err := o.ListInstances(cmd.Context())
			if err != nil {
				return err
			}
			w := newTable(cmd.OutOrStdout(), "AGENT\tSPIFFE ID\tSTATE\tSVID EXPIRES\tSERIAL")
			for _, in := range ins {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", in.Agent, in.SPIFFEID, in.State, in.NotAfter.Local().Format(time.RFC3339), in.Serial)
			}
			return w.Flush()
		}),
	}
	lsrc.flags(list)
	var rsrc source
	var rby string
	retire := &cobra.Command{
		Use:   "retire SPIFFE_ID",
		Short: "Retire an agent instance: revoke its SVID for good",
		Args:  cobra.ExactArgs(1),
		RunE: rsrc.run(func(cmd *cobra.Command, args []string, o *ops.Ops) error {
			who, err := actor(rby)
			if err != nil {
				return err
			}
			if err := o.RetireInstance(cmd.Context(), args[0], who); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s retired\n", args[0])
			return nil
		}),
	}
	rsrc.flags(retire)
	retire.Flags().StringVar(&rby, "by", "", "who retires it (default: $USER)")
	cmd.AddCommand(join, enrol, rotate, list, retire, revokeCmd(store.RevokeAgent, "NAME"), unrevokeCmd(store.RevokeAgent, "NAME"))
	return cmd
}

func bundle(path string) (*x509.CertPool, error) {
	if path == "" {
		return nil, errors.New("--ca is required: the gateway's CA bundle, obtained out of band")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, errors.New("--ca: no certificates")
	}
	return pool, nil
}
