package budget

import (
	"sync"
	"time"

	"github.com/portcullis-dev/portcullis/internal/reason"
)

// MaxKeys bounds the tracked agents and repeated calls.
const MaxKeys = 100_000

// Limits configure a Keeper. Zero disables a check.
type Limits struct {
	PerMinute    int           // calls per agent per minute
	RepeatLimit  int           // identical calls within RepeatWindow before the breaker opens
	RepeatWindow time.Duration //
	Cooldown     time.Duration // how long an open breaker denies the tool to the agent
}

// Keeper applies Limits.
type Keeper struct {
	lim Limits
	now func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket
	repeats map[string]*repeat
	open    map[string]time.Time // agent+tool -> until
}

type bucket struct {
	tokens float64
	last   time.Time
}

type repeat struct {
	start time.Time
	n     int
}

// New returns a Keeper. now may be nil (time.Now).
func New(lim Limits, now func() time.Time) *Keeper {
	if now == nil {
		now = time.Now
	}
	return &Keeper{lim: lim, now: now, buckets: map[string]*bucket{}, repeats: map[string]*repeat{}, open: map[string]time.Time{}}
}

// Admit decides whether agent may call tool now with arguments identified by
// argsKey. It returns "" if so, else a reason code; tripped is true when this
// call opened the breaker (for the audit log).
func (k *Keeper) Admit(agent, tool, argsKey string) (refused reason.Code, tripped bool) {
	if k == nil {
		return "", false
	}
	now := k.now()
	k.mu.Lock()
	defer k.mu.Unlock()
	at := agent + "\x00" + tool
	if until, ok := k.open[at]; ok {
		if now.Before(until) {
			return reason.BreakerOpen, false
		}
		delete(k.open, at)
	}
	if k.lim.PerMinute > 0 && !k.take(agent, now) {
		return reason.RateLimited, false
	}
	if k.lim.RepeatLimit > 0 {
		key := at + "\x00" + argsKey
		r, ok := k.repeats[key]
		if !ok || now.Sub(r.start) > k.lim.RepeatWindow {
			k.sweep(now)
			r = &repeat{start: now}
			k.repeats[key] = r
		}
		r.n++
		if r.n > k.lim.RepeatLimit {
			delete(k.repeats, key)
			k.open[at] = now.Add(k.lim.Cooldown)
			return reason.BreakerOpen, true
		}
	}
	return "", false
}

func (k *Keeper) take(agent string, now time.Time) bool {
	b, ok := k.buckets[agent]
	capacity := float64(k.lim.PerMinute)
	if !ok {
		if len(k.buckets) >= MaxKeys {
			k.buckets = map[string]*bucket{} // bounded memory: forget and start full
		}
		b = &bucket{tokens: capacity, last: now}
		k.buckets[agent] = b
	}
	b.tokens = min(capacity, b.tokens+now.Sub(b.last).Seconds()*capacity/60)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// sweep drops expired repeat windows when the map is full.
func (k *Keeper) sweep(now time.Time) {
	if len(k.repeats) < MaxKeys {
		return
	}
	for key, r := range k.repeats {
		if now.Sub(r.start) > k.lim.RepeatWindow {
			delete(k.repeats, key)
		}
	}
	if len(k.repeats) >= MaxKeys {
		k.repeats = map[string]*repeat{}
	}
}
