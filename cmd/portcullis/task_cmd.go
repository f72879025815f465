package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/portcullis-dev/portcullis/internal/ops"
	"github.com/portcullis-dev/portcullis/internal/store"
	"github.com/portcullis-dev/portcullis/internal/token"
)

// issuance holds the flags shared by `task start` and `task intent`: who
// issues, the user's OIDC ID token, the lifetime.
type issuance struct {
	by, idTokenFile string
	ttl             time.Duration
}

func (x *issuance) flags(f *pflag.FlagSet, verb string) {
	f.StringVar(&x.by, "by", "", "who "+verb+" it (default: $USER)")
	f.StringVar(&x.idTokenFile, "id-token", "", "file holding the user's OIDC ID token (required when identity.oidc is configured)")
	f.DurationVar(&x.ttl, "ttl", 0, "lifetime (default: auth.default_ttl)")
}

// resolve reads the ID token (if any) and names who issues.
func (x *issuance) resolve() (idToken, who string, err error) {
	if x.idTokenFile != "" {
		b, err := os.ReadFile(x.idTokenFile)
		if err != nil {
			return "", "", err
		}
		idToken = strings.TrimSpace(string(b))
	}
	who, err = actor(x.by)
	return idToken, who, err
}

// intentCmd is `task intent`: the user's request for an agent working
// without a task token.
func intentCmd() *cobra.Command {
	var src source
	var in token.Intent
	var is issuance
	cmd := &cobra.Command{
		Use:   "intent --agent A --text \"what the user asked for\"",
		Short: "Sign a user's request for an agent's sessions (the Portcullis-Intent header)",
		Long: "Prints JSON {token, expires}. The orchestrator sends the token in the\n" +
			"Portcullis-Intent header of the agent's MCP requests: addresses, names,\n" +
			"amounts the request names are then trusted provenance in that session, as a\n" +
			"task's purpose is (docs/identity.md). The token is for --agent only.",
		Args: cobra.NoArgs,
		RunE: src.run(func(cmd *cobra.Command, _ []string, o *ops.Ops) error {
			idToken, who, err := is.resolve()
			if err != nil {
				return err
			}
			raw, issued, err := o.IssueIntent(cmd.Context(), in, idToken, is.ttl, who)
			if err != nil {
				return err
			}
			return json.NewEncoder(cmd.OutOrStdout()).Encode(map[string]any{"token": raw, "expires": issued.Expires})
		}),
	}
	src.flags(cmd)
	f := cmd.Flags()
	is.flags(f, "signs")
	f.StringVar(&in.Agent, "agent", "", "the agent")
	f.StringVar(&in.User, "user", "", "the user who asked")
	f.StringVar(&in.Text, "text", "", "the user's request, as they wrote it")
	return cmd
}

func taskCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "task", Short: "Task-scoped, sender-constrained agent credentials"}
	var src source
	var t token.Task
	var is issuance
	start := &cobra.Command{
		Use:   "start --agent A --tools upstream__tool,... --budget N --jkt THUMBPRINT",
		Short: "Start a task for an agent: a short-lived token scoped to tools and a call budget, bound to the agent's DPoP key",
		Long: "Prints JSON {task_id, token, expires}. The agent presents the token as\n" +
			"\"Authorization: DPoP <token>\" with a DPoP proof (RFC 9449) signed by the key\n" +
			"whose RFC 7638 thumbprint is --jkt; without the key the token is refused. The\n" +
			"task sees and may call only --tools (and only what policy allows of them).",
		Args: cobra.NoArgs,
		RunE: src.run(func(cmd *cobra.Command, _ []string, o *ops.Ops) error {
			if (t.JKT == "") == (t.X5T == "") {
				return errors.New("give --jkt or --x5t: task tokens are bound to the agent's key")
			}
			idToken, who, err := is.resolve()
			if err != nil {
				return err
			}
			raw, issued, err := o.StartTask(cmd.Context(), t, idToken, is.ttl, who)
			if err != nil {
				return err
			}
			return json.NewEncoder(cmd.OutOrStdout()).Encode(map[string]any{"task_id": issued.ID, "token": raw, "expires": issued.Expires})
		}),
	}
	src.flags(start)
	f := start.Flags()
	is.flags(f, "starts")
	f.StringVar(&t.Agent, "agent", "", "the agent")
	f.StringVar(&t.User, "user", "", "the user the agent acts for")
	f.StringVar(&t.Purpose, "purpose", "", "what the task is for (shown to reviewers and in the audit log)")
	f.StringSliceVar(&t.Tools, "tools", nil, "qualified tool names the task may use")
	f.IntVar(&t.Budget, "budget", 100, "how many calls the task may make")
	f.StringVar(&t.JKT, "jkt", "", "RFC 7638 thumbprint of the agent's DPoP public key")
	f.StringVar(&t.X5T, "x5t", "", "RFC 8705 thumbprint (x5t#S256) of the agent's client certificate, instead of --jkt")
	f.IntVar(&t.Depth, "depth", 0, "how many times the task may be delegated onwards")
	var lsrc source
	list := &cobra.Command{
		Use:   "list",
		Short: "List started tasks (from the audit log) and whether they are revoked",
		Args:  cobra.NoArgs,
		RunE: lsrc.run(func(cmd *cobra.Command, _ []string, o *ops.Ops) error {
			ts, err := o.ListTasks(cmd.Context())
			if err != nil {
				return err
			}
			w := newTable(cmd.OutOrStdout(), "TASK\tAGENT\tUSER\tSTARTED\tREVOKED\tSCOPE")
			for _, t := range ts {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%v\t%s\n", t.ID, t.Agent, t.User, t.Started.Local().Format(time.RFC3339), t.Revoked, t.Detail)
			}
			return w.Flush()
		}),
	}
	lsrc.flags(list)
	cmd.AddCommand(start, list, intentCmd(), revokeCmd(store.RevokeTask, "TASK_ID"), unrevokeCmd(store.RevokeTask, "TASK_ID"))
	cmd.AddCommand(dpopKeyCmds()...)
	return cmd
}
