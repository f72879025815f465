package authserver

import (
	"net"
	"net/http"
	"sync"
	"time"
)

// Throttles of the server's unauthenticated doors: failed sign-ins per
// person and per address, registrations per address.
const (
	throttleWindow   = 15 * time.Minute
	maxUserFailures  = 5  // wrong passwords for one person in a window: locked for the rest of it
	maxAddrFailures  = 20 // wrong passwords from one address in a window
	maxRegistrations = 20 // registrations from one address in a window
	maxThrottleKeys  = 10000
)

// throttle counts events per key within throttleWindow.
type throttle struct {
	mu     sync.Mutex
	events map[string][]time.Time
	now    func() time.Time
}

func newThrottle(now func() time.Time) *throttle {
	return &throttle{events: map[string][]time.Time{}, now: now}
}

// count is how many events key had in the window (old ones forgotten).
func (t *throttle) count(key string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.prune(key))
}

// add records an event for key and returns the count with it.
func (t *throttle) add(key string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.events) >= maxThrottleKeys {
		for k := range t.events {
			if len(t.prune(k)) == 0 {
				delete(t.events, k)
			}
		}
		if len(t.events) >= maxThrottleKeys {
			clear(t.events) // under attack from many addresses: start over rather than grow
		}
	}
	t.events[key] = append(t.prune(key), t.now())
	return len(t.events[key])
}

func (t *throttle) prune(key string) []time.Time {
	cut := t.now().Add(-throttleWindow)
	ev := t.events[key]
	i := 0
	for i < len(ev) && ev[i].Before(cut) {
		i++
	}
	ev = ev[i:]
	if len(ev) == 0 {
		delete(t.events, key)
		return nil
	}
	t.events[key] = ev
	return ev
}

// remoteAddr is the request's peer address (not a header a client sets).
func remoteAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
