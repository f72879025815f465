package mcpproxy

import (
	"context"
	"slices"
	"strings"
	"time"
)

// Subscriptions (resources/subscribe) on an upstream session: which agent
// sessions hold each, so that resources/updated reaches them alone. On an
// upstream session several agent sessions share, room for a subscription
// is taken before it is relayed and settled when the upstream answers
// (bounded per upstream session, per agent session and, when several
// agents share it, per agent: maxSubscriptions, maxSubscriptionsPerSession,
// maxSubscriptionsPerAgent).

// subTurn is a URI's turn: held while it is in l.subTurns, handed on to
// the waiters in the order they came.
type subTurn struct{ waiters []chan struct{} }

// subscriptionTurn waits until no other subscription or unsubscription
// of uri is in flight on the link, then takes the turn until release is
// called (once). On a link agent sessions share, this keeps what the
// upstream sees in the order the gateway decided: an unsubscription
// relayed by the last holder cannot cross another session's subscription
// on the way, and an unsubscription is never judged by a subscription
// whose answer is still to come. Waiters are served first come, first
// served; one fails when ctx ends or it has waited timeout
// (errQueueTimeout).
func (l *link) subscriptionTurn(ctx context.Context, uri string, timeout time.Duration) (release func(), err error) {
	release = func() { l.passTurn(uri) }
	l.mu.Lock()
	t, held := l.subTurns[uri]
	if !held {
		if l.subTurns == nil {
			l.subTurns = map[string]*subTurn{}
		}
		l.subTurns[uri] = &subTurn{}
		l.mu.Unlock()
		return release, nil
	}
	mine := make(chan struct{})
	t.waiters = append(t.waiters, mine)
	l.mu.Unlock()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-mine:
		return release, nil
	case <-ctx.Done():
		err = ctx.Err()
	case <-timer.C:
		err = errQueueTimeout
	}
	l.mu.Lock()
	if i := slices.Index(t.waiters, mine); i >= 0 {
		t.waiters = slices.Delete(t.waiters, i, i+1)
		l.mu.Unlock()
		return nil, err
	}
	l.mu.Unlock()
	release() // handed the turn as the wait ended: on to the next
	return nil, err
}

// passTurn ends the holder's turn at uri: the first waiter takes it.
func (l *link) passTurn(uri string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	t := l.subTurns[uri]
	if len(t.waiters) == 0 {
		delete(l.subTurns, uri)
		return
	}
	next := t.waiters[0]
	t.waiters = slices.Delete(t.waiters, 0, 1)
	close(next)
}

// countSubs adds d to s's subscriptions, held and pending (l.mu held).
func (l *link) countSubs(s *Session, d int) {
	if l.subCount[s] += d; l.subCount[s] <= 0 {
		delete(l.subCount, s)
	}
	if l.agentSubs == nil {
		l.agentSubs = map[string]int{}
	}
	if l.agentSubs[s.agent] += d; l.agentSubs[s.agent] <= 0 {
		delete(l.agentSubs, s.agent)
	}
}

// holdSubscription takes room, before it is relayed, for a subscription
// of s to uri on an upstream session others share: one that could not be
// recorded is refused, not relayed (its updates would reach nobody, and
// another holder's unsubscription would end it upstream). It reports
// whether s held it already, and false in ok when there is no room. A
// room taken (had false, ok true) is settled by settleSubscription once
// the upstream answered.
func (l *link) holdSubscription(s *Session, uri string) (had, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, attached := l.sessions[s]; !attached {
		return false, false
	}
	if l.subs[uri][s] {
		return true, true
	}
	if !l.subRoom(s, uri) {
		return false, false
	}
	if l.subPending == nil {
		l.subPending = map[string]map[*Session]int{}
	}
	if l.subPending[uri] == nil {
		l.subPending[uri] = map[*Session]int{}
	}
	l.subPending[uri][s]++
	l.countSubs(s, 1)
	return false, true
}

// settleSubscription ends a hold of holdSubscription: the subscription
// is recorded if the upstream accepted it.
func (l *link) settleSubscription(s *Session, uri string, accepted bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if ps := l.subPending[uri]; ps[s] > 0 {
		if ps[s]--; ps[s] == 0 {
			delete(ps, s)
		}
		if len(ps) == 0 {
			delete(l.subPending, uri)
		}
		l.countSubs(s, -1)
	}
	if _, attached := l.sessions[s]; accepted && attached {
		l.subscribe(s, uri)
	}
}

// subRoom reports whether s may hold one more subscription, to uri
// (l.mu held).
func (l *link) subRoom(s *Session, uri string) bool {
	if l.subCount[s] >= maxSubscriptionsPerSession {
		return false
	}
	if l.acrossAgents() && l.agentSubs[s.agent] >= maxSubscriptionsPerAgent {
		return false
	}
	if l.subs[uri] != nil || l.subPending[uri] != nil {
		return true
	}
	uris := len(l.subs)
	for p := range l.subPending {
		if l.subs[p] == nil {
			uris++
		}
	}
	return uris < maxSubscriptions
}

// subscribe records s's subscription to uri if there is room (l.mu held).
func (l *link) subscribe(s *Session, uri string) bool {
	ss := l.subs[uri]
	switch {
	case ss[s]:
		return true
	case !l.subRoom(s, uri):
		return false
	case ss == nil:
		l.subs[uri] = map[*Session]bool{s: true}
	default:
		ss[s] = true
	}
	l.countSubs(s, 1)
	return true
}

// subscribed notes that s subscribed to uri (on, else unsubscribed),
// once the upstream answered.
func (l *link) subscribed(s *Session, uri string, on bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, attached := l.sessions[s]; !attached {
		return // detached meanwhile: nothing to route to
	}
	ss := l.subs[uri]
	switch {
	case on:
		l.subscribe(s, uri)
	case ss[s]:
		delete(ss, s)
		if len(ss) == 0 {
			delete(l.subs, uri)
		}
		l.countSubs(s, -1)
	}
}

// subscribers are the sessions an update of uri goes to: on an upstream
// session of one agent session's own, that session (as the server sends
// it); on a shared one, those subscribed to uri or to a resource it is
// part of (MCP lets an update name a sub-resource of the one subscribed).
func (l *link) subscribers(uri string) []*Session {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []*Session
	if l.key == "" {
		for s := range l.sessions {
			out = append(out, s)
		}
		return out
	}
	seen := map[*Session]bool{}
	for sub, ss := range l.subs {
		if !within(uri, sub) {
			continue
		}
		for s := range ss {
			if _, ok := l.sessions[s]; ok && !seen[s] {
				seen[s] = true
				out = append(out, s)
			}
		}
	}
	return out
}

// subscribedElsewhere reports whether a session of the link other than s
// holds a subscription to uri.
func (l *link) subscribedElsewhere(s *Session, uri string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for o := range l.subs[uri] {
		if _, attached := l.sessions[o]; attached && o != s {
			return true
		}
	}
	for o := range l.subPending[uri] {
		if _, attached := l.sessions[o]; attached && o != s {
			return true // subscribing: ending it upstream now could undo that
		}
	}
	return false
}

// within reports whether uri is sub or a resource under it (sub followed
// by a path, query or fragment).
func within(uri, sub string) bool {
	if !strings.HasPrefix(uri, sub) {
		return false
	}
	if len(uri) == len(sub) || strings.HasSuffix(sub, "/") {
		return true
	}
	return strings.ContainsRune("/?#", rune(uri[len(sub)]))
}
