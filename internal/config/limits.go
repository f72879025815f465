package config

import (
	"errors"
	"fmt"
	"time"
)

// Limits bound everything an agent or upstream can make Portcullis hold. Each
// has a named default; exceeding one is a clear error, never a crash.
type Limits struct {
	// MaxMessageBytes bounds one HTTP request body or stdio line.
	MaxMessageBytes int64 `json:"max_message_bytes,omitempty"`
	// MaxJSONDepth bounds nesting of any JSON-RPC message.
	MaxJSONDepth int `json:"max_json_depth,omitempty"`
	// MaxBatch bounds the number of messages in one JSON-RPC batch.
	MaxBatch int `json:"max_batch,omitempty"`
	// MaxArgumentBytes bounds the encoded arguments of one tool call.
	MaxArgumentBytes int `json:"max_argument_bytes,omitempty"`
	// MaxResultBytes bounds the encoded result the gateway relays to an agent.
	MaxResultBytes int `json:"max_result_bytes,omitempty"`
	// MaxCallsPerSession bounds concurrent calls from one agent session.
	MaxCallsPerSession int `json:"max_concurrent_calls_per_session,omitempty"`
	// MaxCallsPerUpstream bounds concurrent calls to one upstream (default for
	// upstreams that do not set their own).
	MaxCallsPerUpstream int `json:"max_concurrent_calls_per_upstream,omitempty"`
	// MaxQueuedCallsPerUpstream bounds calls waiting for a slot with one
	// upstream (default for upstreams; -1: none wait, a call finding every
	// slot taken is refused at once).
	MaxQueuedCallsPerUpstream int `json:"max_queued_calls_per_upstream,omitempty"`
	// QueueTimeout is how long a call waits for a slot with its upstream
	// before it is refused (default for upstreams).
	QueueTimeout Duration `json:"queue_timeout,omitempty"`
	// MaxSessions bounds concurrent agent sessions.
	MaxSessions int `json:"max_sessions,omitempty"`
	// CallTimeout bounds one upstream call (default for upstreams).
	CallTimeout Duration `json:"call_timeout,omitempty"`
	// SessionIdleTimeout closes agent sessions that send nothing for this long.
	SessionIdleTimeout Duration `json:"session_idle_timeout,omitempty"`
	// ShutdownGrace is how long graceful shutdown waits for in-flight calls.
	ShutdownGrace Duration `json:"shutdown_grace,omitempty"`
	// AgentCallsPerMinute caps each agent's tool calls (-1: no cap).
	AgentCallsPerMinute int `json:"agent_calls_per_minute,omitempty"`
	// RepeatCallLimit is how many identical calls (agent, tool, arguments)
	// RepeatCallWindow tolerates before the breaker denies the tool to the
	// agent for BreakerCooldown (-1: no breaker).
	RepeatCallLimit  int      `json:"repeat_call_limit,omitempty"`
	RepeatCallWindow Duration `json:"repeat_call_window,omitempty"`
	BreakerCooldown  Duration `json:"breaker_cooldown,omitempty"`
}

// Default limits.
const (
	DefaultMaxMessageBytes     = 4 << 20
	DefaultMaxJSONDepth        = 64
	DefaultMaxBatch            = 16
	DefaultMaxArgumentBytes    = 256 << 10
	DefaultMaxResultBytes      = 8 << 20
	DefaultMaxCallsPerSession  = 16
	DefaultMaxCallsPerUpstream = 64
	DefaultMaxQueuedCalls      = 1024
	DefaultQueueTimeout        = 10 * time.Second
	DefaultMaxSessions         = 10000
	DefaultSessionIdleTimeout  = 30 * time.Minute
	DefaultShutdownGrace       = 15 * time.Second
	DefaultAgentCallsPerMinute = 1200
	DefaultRepeatCallLimit     = 30
	DefaultRepeatCallWindow    = time.Minute
	DefaultBreakerCooldown     = 5 * time.Minute
)

func (l *Limits) applyDefaults() {
	setInt64(&l.MaxMessageBytes, DefaultMaxMessageBytes)
	setInt(&l.MaxJSONDepth, DefaultMaxJSONDepth)
	setInt(&l.MaxBatch, DefaultMaxBatch)
	setInt(&l.MaxArgumentBytes, DefaultMaxArgumentBytes)
	setInt(&l.MaxResultBytes, DefaultMaxResultBytes)
	setInt(&l.MaxCallsPerSession, DefaultMaxCallsPerSession)
	setInt(&l.MaxCallsPerUpstream, DefaultMaxCallsPerUpstream)
	setInt(&l.MaxQueuedCallsPerUpstream, DefaultMaxQueuedCalls)
	if l.QueueTimeout == 0 {
		l.QueueTimeout = Duration(DefaultQueueTimeout)
	}
	setInt(&l.MaxSessions, DefaultMaxSessions)
	if l.CallTimeout == 0 {
		l.CallTimeout = Duration(DefaultCallTimeout)
	}
	if l.SessionIdleTimeout == 0 {
		l.SessionIdleTimeout = Duration(DefaultSessionIdleTimeout)
	}
	if l.ShutdownGrace == 0 {
		l.ShutdownGrace = Duration(DefaultShutdownGrace)
	}
	setInt(&l.AgentCallsPerMinute, DefaultAgentCallsPerMinute)
	setInt(&l.RepeatCallLimit, DefaultRepeatCallLimit)
	if l.RepeatCallWindow == 0 {
		l.RepeatCallWindow = Duration(DefaultRepeatCallWindow)
	}
	if l.BreakerCooldown == 0 {
		l.BreakerCooldown = Duration(DefaultBreakerCooldown)
	}
}

func (l *Limits) validate() []error {
	var errs []error
	pos := func(name string, v int64) {
		if v <= 0 {
			errs = append(errs, fmt.Errorf("limits.%s: must be positive", name))
		}
	}
	pos("max_message_bytes", l.MaxMessageBytes)
	pos("max_json_depth", int64(l.MaxJSONDepth))
	pos("max_batch", int64(l.MaxBatch))
	pos("max_argument_bytes", int64(l.MaxArgumentBytes))
	pos("max_result_bytes", int64(l.MaxResultBytes))
	pos("max_concurrent_calls_per_session", int64(l.MaxCallsPerSession))
	pos("max_concurrent_calls_per_upstream", int64(l.MaxCallsPerUpstream))
	pos("queue_timeout", int64(l.QueueTimeout))
	pos("max_sessions", int64(l.MaxSessions))
	pos("call_timeout", int64(l.CallTimeout))
	pos("session_idle_timeout", int64(l.SessionIdleTimeout))
	pos("shutdown_grace", int64(l.ShutdownGrace))
	if l.MaxQueuedCallsPerUpstream < -1 {
		errs = append(errs, errors.New("limits.max_queued_calls_per_upstream: -1 (no queue) or positive"))
	}
	if l.AgentCallsPerMinute < -1 || l.RepeatCallLimit < -1 {
		errs = append(errs, errors.New("limits.agent_calls_per_minute and limits.repeat_call_limit: -1 (off) or positive"))
	}
	if l.MaxMessageBytes > 64<<20 {
		errs = append(errs, errors.New("limits.max_message_bytes: at most 64 MiB"))
	}
	if l.MaxJSONDepth > 1000 {
		errs = append(errs, errors.New("limits.max_json_depth: at most 1000"))
	}
	return errs
}

func setInt(p *int, d int) {
	if *p == 0 {
		*p = d
	}
}

func setInt64(p *int64, d int64) {
	if *p == 0 {
		*p = d
	}
}
