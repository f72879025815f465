package mcpproxy

import (
	"slices"
	"sync"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/reason"
)

// LabelUntrustedInput is the label a session gets by default from a tool
// that does not declare a closed world: its results may carry content an
// attacker wrote (a web page, an email, an issue comment).
const LabelUntrustedInput = "untrusted_input"

// maxSessionLabels bounds one session's label set (labels come from
// configuration, so this is never reached in practice; it keeps the set
// bounded whatever the configuration).
const maxSessionLabels = 64

// Labels are the data-flow labels that reading from an upstream or a tool
// gives a session. A key that is present replaces the default, even with
// an empty list.
type Labels struct {
	// Upstreams maps an upstream name to the labels of everything read
	// from it.
	Upstreams map[string][]string
	// Tools maps a qualified tool name to the labels of its results; it
	// overrides the tool's upstream.
	Tools map[string][]string
}

// sessionLabels is the set of labels a session has acquired. Labels are
// only ever added: a session cannot shed what it has seen.
type sessionLabels struct {
	mu  sync.Mutex
	set []string // sorted
}

// list returns a copy of the labels, sorted.
func (s *sessionLabels) list() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.set)
}

// add adds labels and returns those that were new.
func (s *sessionLabels) add(labels []string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var added []string
	for _, l := range labels {
		i, found := slices.BinarySearch(s.set, l)
		if found || len(s.set) >= maxSessionLabels {
			continue
		}
		s.set = slices.Insert(s.set, i, l)
		added = append(added, l)
	}
	return added
}

// toolLabels are the labels a result of tool e gives a session.
func (p *Proxy) toolLabels(e *toolEntry) []string {
	if l, ok := p.opts.Labels.Tools[e.qualified]; ok {
		return l
	}
	if l, ok := p.opts.Labels.Upstreams[e.up.Name]; ok {
		return l
	}
	if e.target.OpenWorld {
		return []string{LabelUntrustedInput}
	}
	return nil
}

// upstreamLabels are the labels reading a resource or prompt of u gives a
// session. Resources and prompts carry no world hint, so without
// configuration they label nothing.
func (p *Proxy) upstreamLabels(u *Upstream) []string {
	return p.opts.Labels.Upstreams[u.Name]
}

// label adds labels to c's session after it read from target, and records
// the labels that were new. The label applies before the result reaches
// the agent, so the agent's next request is decided with it; a session
// kept in the store has it written there first (a refusal when that
// fails: the result must then be withheld).
func (p *Proxy) label(c *call, labels []string) *refusal {
	if c.s == nil || len(labels) == 0 {
		return nil
	}
	if added := c.s.labels.add(labels); len(added) > 0 {
		e := p.followUp(c, audit.TypeSessionLabel, reason.Labelled)
		e.Labels = added
		p.recordBackground(e)
	}
	// Every label of the result, new here or not: another call of the
	// session may be writing it still, or may have failed to.
	return p.keepLabels(c.s, labels)
}

// followUp is an info event about what happened after c's decision,
// attributed like the decision (agent, user, task, session, request, trace,
// target).
func (p *Proxy) followUp(c *call, typ audit.Type, code reason.Code) *audit.Event {
	return audit.FollowUp(c.event, typ, code, p.opts.Now())
}
