package mcpproxy

import (
	"context"
	"strings"
)

// Subscriptions (resources/subscribe) on an upstream session: which agent
// sessions hold each, so that resources/updated reaches them alone. On an
// upstream session several agent sessions share, room for a subscription
// is taken before it is relayed and settled when the upstream answers
// (bounded per upstream session, per agent session and, when several
// agents share it, per agent: maxSubscriptions, maxSubscriptionsPerSession,
// maxSubscriptionsPerAgent).

// subscriptionTurn waits until no other subscription or unsubscription
// of uri is in flight on the link, then takes the turn until release is
// called. On a link agent sessions share, this keeps what the upstream
// sees in the order the gateway decided: an unsubscription relayed by the
// last holder cannot cross another session's subscription on the way, and
// an unsubscription is never judged by a subscription whose answer is
// still to come. It fails only when ctx ends first.
func (l *link) subscriptionTurn(ctx context.Context, uri string) (release func(), err error) {
	for {
		l.mu.Lock()
		busy, taken := l.subTurns[uri]
		if !taken {
			if l.subTurns == nil {
				l.subTurns = map[string]chan struct{}{}
			}
			mine := make(chan struct{})
			l.subTurns[uri] = mine
			l.mu.Unlock()
			return func() {
				l.mu.Lock()
				delete(l.subTurns, uri)
				l.mu.Unlock()
				close(mine)
			}, nil
		}
		l.mu.Unlock()
		select {
		case <-busy:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
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
	l.subCount[s]++
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
		if l.subCount[s]--; l.subCount[s] <= 0 {
			delete(l.subCount, s)
		}
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
	if l.acrossAgents() {
		n := 0
		for o, c := range l.subCount {
			if o.agent == s.agent {
				n += c
			}
		}
		if n >= maxSubscriptionsPerAgent {
			return false
		}
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
	l.subCount[s]++
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
		if l.subCount[s]--; l.subCount[s] <= 0 {
			delete(l.subCount, s)
		}
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
