package token

import (
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"
)

// TypTask is the JOSE "typ" of task tokens.
const TypTask = "portcullis-task+jwt"

// Task-token limits.
const (
	MaxTaskTools    = 256
	MaxPurposeBytes = 512
)

// Task is what a task token grants: an agent may, for one task and for the
// user it acts for, use these tools, this many times, until it expires. It
// is bound to the key whose thumbprint is JKT (DPoP).
type Task struct {
	ID      string   // the task
	Agent   string   // who may use it
	User    string   // for whom (optional)
	Purpose string   // why, for people
	Tools   []string // qualified tool names the task may use
	Budget  int      // calls allowed (0: none left... must be positive at issue)
	Depth   int      // further delegations allowed (used by delegation)
	JKT     string   // DPoP key thumbprint the token is bound to (or:)
	X5T     string   // client certificate thumbprint (RFC 8705 x5t#S256)
	// Actors is the delegation path, nearest first: the agent that
	// delegated this token, the one that delegated to it, ... (RFC 8693 act).
	Actors []string
	// Parent is the token ID this one was delegated from ("" for a root).
	Parent string
	// Filled in by Issue / Verify:
	TokenID string
	Expires time.Time
}

// actClaim is RFC 8693's nested actor claim.
type actClaim struct {
	Sub string    `json:"sub"`
	Act *actClaim `json:"act,omitempty"`
}

func actOf(actors []string) *actClaim {
	if len(actors) == 0 {
		return nil
	}
	return &actClaim{Sub: actors[0], Act: actOf(actors[1:])}
}

func (a *actClaim) list(depth int) []string {
	if a == nil || depth > 32 {
		return nil
	}
	return append([]string{a.Sub}, a.Act.list(depth+1)...)
}

type taskClaims struct {
	jwt.Claims
	Act     *actClaim `json:"act,omitempty"`
	Parent  string    `json:"parent,omitempty"`
	Task    string    `json:"task"`
	User    string    `json:"usr,omitempty"`
	Purpose string    `json:"purpose,omitempty"`
	Tools   []string  `json:"tools"`
	Budget  int       `json:"budget"`
	Depth   int       `json:"depth"`
	Cnf     struct {
		JKT string `json:"jkt,omitempty"`
		X5T string `json:"x5t#S256,omitempty"`
	} `json:"cnf"`
}

// IssueTask mints a task token.
func (i *Issuer) IssueTask(t Task, ttl time.Duration) (string, Task, error) {
	switch {
	case i.typ != TypTask:
		return "", Task{}, errors.New("issue task: not a task issuer")
	case t.Agent == "" || (t.JKT == "") == (t.X5T == ""):
		return "", Task{}, errors.New("issue task: an agent and exactly one key binding (DPoP key or client certificate thumbprint) are required: task tokens are sender-constrained")
	case len(t.Tools) == 0 || len(t.Tools) > MaxTaskTools:
		return "", Task{}, fmt.Errorf("issue task: between 1 and %d tools", MaxTaskTools)
	case t.Budget <= 0 || t.Depth < 0 || len(t.Purpose) > MaxPurposeBytes:
		return "", Task{}, errors.New("issue task: positive budget, non-negative depth, purpose within limits")
	case ttl <= 0 || ttl > i.maxTTL:
		return "", Task{}, fmt.Errorf("issue task: ttl %s outside (0, %s]", ttl, i.maxTTL)
	}
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return "", Task{}, err
	}
	if t.ID == "" {
		t.ID = "task-" + b64(id[:9])
	}
	now := i.now().Truncate(time.Second)
	t.TokenID = b64(id[:])
	if t.Expires.IsZero() || t.Expires.After(now.Add(ttl)) {
		t.Expires = now.Add(ttl)
	}
	c := taskClaims{
		Claims: jwt.Claims{ID: t.TokenID, Subject: t.Agent, Issuer: i.issuer, Audience: jwt.Audience{i.audience},
			IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(t.Expires)},
		Task: t.ID, User: t.User, Purpose: t.Purpose, Tools: slices.Sorted(slices.Values(t.Tools)), Budget: t.Budget, Depth: t.Depth,
		Act: actOf(t.Actors), Parent: t.Parent,
	}
	c.Cnf.JKT, c.Cnf.X5T = t.JKT, t.X5T
	raw, err := jwt.Signed(i.signer).Claims(c).Serialize()
	if err != nil {
		return "", Task{}, err
	}
	return raw, t, nil
}

// VerifyTask checks a task token's signature and claims (not its DPoP
// binding: the caller checks the proof against Task.JKT).
func (v *Verifier) VerifyTask(raw string) (Task, error) {
	if v.typ != TypTask {
		return Task{}, errors.New("verify task: not a task verifier")
	}
	var c taskClaims
	if err := v.verifySigned(raw, TypTask, &c); err != nil {
		return Task{}, err
	}
	if c.Expiry == nil || c.IssuedAt == nil || c.ID == "" || c.Subject == "" || c.Task == "" || (c.Cnf.JKT == "") == (c.Cnf.X5T == "") || len(c.Tools) == 0 {
		return Task{}, fmt.Errorf("%w: exp, iat, jti, sub, task, tools and one cnf binding are required", ErrClaims)
	}
	if err := v.checkTimes(c.Claims); err != nil {
		return Task{}, err
	}
	return Task{ID: c.Task, Agent: c.Subject, User: c.User, Purpose: c.Purpose, Tools: c.Tools, Budget: c.Budget,
		Depth: c.Depth, JKT: c.Cnf.JKT, X5T: c.Cnf.X5T, TokenID: c.ID, Expires: c.Expiry.Time(), Actors: c.Act.list(0), Parent: c.Parent}, nil
}

// Errors of Narrow: a delegation may only narrow.
var ErrWiden = errors.New("delegation would widen the parent's scope")

// Narrow derives the task a parent token may delegate to agent: tools a
// subset of the parent's, a budget within what the parent has left, an
// expiry no later than the parent's, one less delegation hop, the same task
// and user, and the parent's holder added to the actor chain.
func Narrow(parent Task, agent, jkt string, tools []string, budget, left int, expires time.Time) (Task, error) {
	switch {
	case parent.Depth <= 0:
		return Task{}, fmt.Errorf("%w: the parent may not delegate (depth 0)", ErrWiden)
	case len(tools) == 0:
		return Task{}, fmt.Errorf("%w: no tools requested", ErrWiden)
	case budget <= 0 || budget > left:
		return Task{}, fmt.Errorf("%w: budget %d, the parent has %d left", ErrWiden, budget, left)
	case expires.After(parent.Expires):
		return Task{}, fmt.Errorf("%w: expiry after the parent's", ErrWiden)
	case agent == "" || jkt == "":
		return Task{}, errors.New("delegate: the receiving agent and its key thumbprint are required")
	}
	for _, t := range tools {
		if !slices.Contains(parent.Tools, t) {
			return Task{}, fmt.Errorf("%w: tool %q is not the parent's", ErrWiden, t)
		}
	}
	return Task{ID: parent.ID, Agent: agent, User: parent.User, Purpose: parent.Purpose, Tools: tools, Budget: budget,
		Depth: parent.Depth - 1, JKT: jkt, Actors: append([]string{parent.Agent}, parent.Actors...), Parent: parent.TokenID,
		Expires: expires}, nil
}
