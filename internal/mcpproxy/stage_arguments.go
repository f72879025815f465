package mcpproxy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"time"

	"github.com/portcullis-dev/portcullis/internal/policy"
	"github.com/portcullis-dev/portcullis/internal/reason"
	"github.com/portcullis-dev/portcullis/internal/wire"
)

// boundArguments bounds a tool call's arguments, checks them against the
// tool's input schema and converts them for policy. A schema violation is
// answered as the server itself would: a tool result with isError whose
// text names the argument and the constraint (never the value); it is
// recorded as a denial. Absent arguments stay absent on the way on.
func boundArguments(p *Proxy, ctx context.Context, c *call) error {
	sp := c.msg.Param("arguments")
	var raw []byte
	if !sp.Empty() {
		raw = c.msg.Bytes(sp)
		if string(raw) == "null" {
			raw = nil // an explicit null reads as no arguments
		}
	}
	if len(raw) > p.opts.Limits.MaxArgumentBytes {
		return deny(reason.ArgumentsTooLarge)
	}
	if err := c.tool.args.check(raw); err != nil {
		r := deny(reason.BadArguments).withDetail(err.Error())
		r.result = isErrorResult("Invalid arguments for tool " + c.tool.served + ": " + err.Error())
		return r
	}
	args, err := policy.WireArguments(c.msg.Raw, sp)
	if err != nil {
		return deny(reason.BadArguments).withDetail(err.Error())
	}
	c.rawArgs, c.cedarArgs = raw, args
	sum := sha256.Sum256(raw)
	c.argsDigest = hex.EncodeToString(sum[:])
	c.event.ArgumentsSHA256 = c.argsDigest
	return nil
}

// promptArguments bounds and converts a prompt's arguments.
func promptArguments(p *Proxy, ctx context.Context, c *call) error {
	sp := c.msg.Param("arguments")
	var raw []byte
	if !sp.Empty() {
		raw = c.msg.Bytes(sp)
	}
	if len(raw) > p.opts.Limits.MaxArgumentBytes {
		return deny(reason.ArgumentsTooLarge)
	}
	if raw != nil && !wire.IsObject(raw, wire.Span{Start: 0, End: len(raw)}) && string(raw) != "null" {
		return deny(reason.BadArguments)
	}
	args, err := policy.WireArguments(c.msg.Raw, sp)
	if err != nil {
		return deny(reason.BadArguments).withDetail(err.Error())
	}
	c.rawArgs, c.cedarArgs = raw, args
	return nil
}

// taskScope: a task-scoped credential may only use the task's tools, and
// only within its call budget.
func taskScope(p *Proxy, ctx context.Context, c *call) error {
	pr := c.principal
	if pr.Task == "" {
		return nil
	}
	found := false
	for _, t := range pr.TaskTools {
		found = found || t == c.tool.qualified
	}
	if !found {
		return deny(reason.OutsideTask)
	}
	left, ok, err := p.Reserve(ctx, pr.CredentialID, pr.TaskBudget, 1)
	if err != nil {
		return deny(reason.Internal).withDetail(err.Error())
	}
	if !ok {
		return deny(reason.TaskExhausted)
	}
	c.budgetLeft = int64(left)
	return nil
}

// rateAndBudget: the agent's call rate, and the breaker on identical calls
// repeated in a loop.
func rateAndBudget(p *Proxy, ctx context.Context, c *call) error {
	if p.opts.Budget != nil {
		refused, tripped := p.opts.Budget.Admit(c.principal.Agent, c.tool.qualified, c.argsDigest)
		if refused != "" {
			r := deny(refused)
			if tripped {
				r.detail = "breaker opened: the same call repeated too often"
			}
			return r
		}
	}
	if p.opts.FleetRate != nil {
		ok, err := p.opts.FleetRate.Allow(ctx, c.principal.Agent, time.Now())
		if err != nil {
			return deny(reason.Internal).withDetail("fleet rate cap: " + err.Error())
		}
		if !ok {
			return deny(reason.RateLimited).withDetail("the fleet's calls per minute for this agent are spent")
		}
	}
	return nil
}

// isErrorResult is a tool result reporting an error to the model.
func isErrorResult(text string) []byte {
	b := []byte(`{"content":[{"type":"text","text":`)
	b = wire.AppendString(b, text)
	return append(b, `}],"isError":true}`...)
}
