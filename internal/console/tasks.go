package console

import (
	"slices"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/reason"
)

// taskNode is an agent holding a task, and the agents it delegated to.
type taskNode struct {
	Agent    string
	Children []*taskNode
}

// taskTree is a task's delegation tree: who started it for whom, and each
// token exchange that handed it on (only narrowing: internal/admin).
type taskTree struct {
	ID, User string
	Root     *taskNode
}

// delegationTrees builds each task's tree from its token events
// (task_started, then each allowed token_exchange: its agent the
// delegator, its target the receiver), newest task first.
func delegationTrees(events []*audit.Event) []*taskTree {
	var out []*taskTree
	byTask := map[string]*taskTree{}
	nodes := map[string]map[string]*taskNode{} // task -> agent -> node
	for _, e := range events {
		if e.Task == "" {
			continue
		}
		switch e.Code {
		case reason.TaskStarted:
			if byTask[e.Task] != nil {
				continue
			}
			t := &taskTree{ID: e.Task, User: e.User, Root: &taskNode{Agent: e.Agent}}
			byTask[e.Task], nodes[e.Task] = t, map[string]*taskNode{e.Agent: t.Root}
			out = append(out, t)
		case reason.TokenExchange:
			// A delegation: Agent handed the task to Target (refused
			// exchanges are events too).
			t := byTask[e.Task]
			if t == nil || e.Outcome != audit.OutcomeAllow || e.Target == "" {
				continue
			}
			parent := nodes[e.Task][e.Agent]
			if parent == nil {
				parent = t.Root // a delegator not seen (before the window)
			}
			if nodes[e.Task][e.Target] != nil {
				continue
			}
			n := &taskNode{Agent: e.Target}
			parent.Children = append(parent.Children, n)
			nodes[e.Task][e.Target] = n
		}
	}
	slices.Reverse(out) // newest first
	return out
}
