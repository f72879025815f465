package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Agent sessions kept in the store, so that a session outlives the gateway
// serving it: another gateway of the fleet (or the same one restarted)
// takes it up when the agent's next request arrives there, with what
// initialize agreed, the data-flow labels the session acquired and the
// containment put on it. What a gateway keeps only in memory (provenance
// memory, links to upstreams, requests in flight) does not follow; the
// session's moved mark tells every gateway that its own memory of the
// session is incomplete.

// AgentSession is one agent session as the store keeps it.
type AgentSession struct {
	ID, Agent, User string
	// Version, ClientCaps and ClientInfo are what initialize agreed (the
	// capabilities and client information as the agent sent them).
	Version                string
	ClientCaps, ClientInfo []byte
	Created, Seen          time.Time
	// Ended: the agent ended the session (DELETE); it is never taken up
	// again.
	Ended bool
	// Moved: more than one gateway (or one gateway's successive
	// processes) served the session.
	Moved bool
}

// ErrSessionExists is returned when a session ID is taken.
var ErrSessionExists = errors.New("session ID taken")

// PutSession records a new session.
func (s *DB) PutSession(ctx context.Context, a AgentSession) error {
	res, err := s.exec(ctx, `INSERT INTO agent_sessions(id, agent, user_id, version, client_caps, client_info, created_ns, seen_ns)
		VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(id) DO NOTHING`,
		a.ID, a.Agent, a.User, a.Version, string(a.ClientCaps), string(a.ClientInfo), a.Created.UnixNano(), a.Seen.UnixNano())
	if err != nil {
		return fmt.Errorf("record session: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrSessionExists
	}
	return nil
}

// Session returns session id (ok false when the store has none).
func (s *DB) Session(ctx context.Context, id string) (a AgentSession, ok bool, err error) {
	var caps, info string
	var created, seen, ended, moved int64
	err = s.queryRow(ctx, `SELECT id, agent, user_id, version, client_caps, client_info, created_ns, seen_ns, ended_ns, moved
		FROM agent_sessions WHERE id = ?`, id).Scan(&a.ID, &a.Agent, &a.User, &a.Version, &caps, &info, &created, &seen, &ended, &moved)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return a, false, nil
	case err != nil:
		return a, false, fmt.Errorf("read session: %w", err)
	}
	a.ClientCaps, a.ClientInfo = []byte(caps), []byte(info)
	a.Created, a.Seen = time.Unix(0, created), time.Unix(0, seen)
	a.Ended, a.Moved = ended != 0, moved != 0
	return a, true, nil
}

// SessionState is what may change of a session while gateways serve it.
type SessionState struct {
	Found, Ended, Moved bool
	Labels              []string // sorted
}

// SessionState reads session id's state and labels in one statement.
func (s *DB) SessionState(ctx context.Context, id string) (SessionState, error) {
	var st SessionState
	rows, err := s.query(ctx, `SELECT ended_ns, moved, label FROM agent_sessions
		LEFT JOIN session_labels ON session_labels.session_id = agent_sessions.id
		WHERE agent_sessions.id = ? ORDER BY label`, id)
	if err != nil {
		return st, fmt.Errorf("read session: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var ended, moved int64
		var label sql.NullString
		if err := rows.Scan(&ended, &moved, &label); err != nil {
			return st, fmt.Errorf("read session: %w", err)
		}
		st.Found, st.Ended, st.Moved = true, ended != 0, moved != 0
		if label.Valid {
			st.Labels = append(st.Labels, label.String)
		}
	}
	if err := rows.Err(); err != nil {
		return st, fmt.Errorf("read session: %w", err)
	}
	return st, nil
}

// TakeUpSession marks session id moved and seen at now, unless it ended
// or was last seen before notBefore; ok is false then (or when there is no
// such session).
func (s *DB) TakeUpSession(ctx context.Context, id string, now, notBefore time.Time) (bool, error) {
	res, err := s.exec(ctx, `UPDATE agent_sessions SET moved = 1, seen_ns = ? WHERE id = ? AND ended_ns = 0 AND seen_ns >= ?`,
		now.UnixNano(), id, notBefore.UnixNano())
	if err != nil {
		return false, fmt.Errorf("take up session: %w", err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// SeenSession records that session id was used at t (the idle expiry of a
// session taken up elsewhere counts from the last use anywhere).
func (s *DB) SeenSession(ctx context.Context, id string, t time.Time) error {
	if _, err := s.exec(ctx, `UPDATE agent_sessions SET seen_ns = ? WHERE id = ? AND seen_ns < ?`, t.UnixNano(), id, t.UnixNano()); err != nil {
		return fmt.Errorf("touch session: %w", err)
	}
	return nil
}

// EndSession marks session id ended: no gateway takes it up again.
func (s *DB) EndSession(ctx context.Context, id string, t time.Time) error {
	if _, err := s.exec(ctx, `UPDATE agent_sessions SET ended_ns = ? WHERE id = ? AND ended_ns = 0`, t.UnixNano(), id); err != nil {
		return fmt.Errorf("end session: %w", err)
	}
	return nil
}

// AddSessionLabels adds labels to session id (labels it has are kept; a
// session never sheds one).
func (s *DB) AddSessionLabels(ctx context.Context, id string, labels []string) error {
	if len(labels) == 0 {
		return nil
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("label session: %w", err)
	}
	defer tx.Rollback()
	for _, l := range labels {
		if _, err := s.execOn(ctx, tx, `INSERT INTO session_labels(session_id, label) VALUES (?,?) ON CONFLICT DO NOTHING`, id, l); err != nil {
			return fmt.Errorf("label session: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("label session: %w", err)
	}
	return nil
}

// PruneSessions forgets sessions last seen before before (their labels and
// containments with them) and returns how many.
func (s *DB) PruneSessions(ctx context.Context, before time.Time) (int64, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("prune sessions: %w", err)
	}
	defer tx.Rollback()
	ns := before.UnixNano()
	for _, q := range []string{
		`DELETE FROM session_labels WHERE session_id IN (SELECT id FROM agent_sessions WHERE seen_ns < ?)`,
		`DELETE FROM containments WHERE session_id <> '' AND session_id IN (SELECT id FROM agent_sessions WHERE seen_ns < ?)`,
	} {
		if _, err := s.execOn(ctx, tx, q, ns); err != nil {
			return 0, fmt.Errorf("prune sessions: %w", err)
		}
	}
	res, err := s.execOn(ctx, tx, `DELETE FROM agent_sessions WHERE seen_ns < ?`, ns)
	if err != nil {
		return 0, fmt.Errorf("prune sessions: %w", err)
	}
	n, _ := res.RowsAffected()
	return n, tx.Commit()
}

// Containment is a hold put on a session (Session set) or on every session
// of an agent (Session empty) by the response to an alert; Level is the
// gateway's containment level (higher is stronger).
type Containment struct {
	Session, Agent string
	Level          int
	At             time.Time
}

// Contain records c; a level already recorded for the same session (or
// agent) is never weakened this way (Uncontain lifts it).
func (s *DB) Contain(ctx context.Context, c Containment) error {
	_, err := s.exec(ctx, `INSERT INTO containments(session_id, agent, level, at_ns) VALUES (?,?,?,?)
		ON CONFLICT(session_id, agent) DO UPDATE SET level = excluded.level, at_ns = excluded.at_ns
		WHERE containments.level < excluded.level`, c.Session, c.Agent, c.Level, c.At.UnixNano())
	if err != nil {
		return fmt.Errorf("record containment: %w", err)
	}
	return nil
}

// Uncontain lifts the containment of session (or, session empty, of
// agent's every session).
func (s *DB) Uncontain(ctx context.Context, session, agent string) error {
	if err := s.uncontain(ctx, s.db, session, agent); err != nil {
		return fmt.Errorf("lift containment: %w", err)
	}
	return nil
}

func (s *DB) uncontain(ctx context.Context, e execer, session, agent string) error {
	q, arg := `DELETE FROM containments WHERE session_id = ?`, session
	if session == "" {
		q, arg = `DELETE FROM containments WHERE session_id = '' AND agent = ?`, agent
	}
	_, err := s.execOn(ctx, e, q, arg)
	return err
}

// ContainedSessions counts agent's sessions contained at or after since.
func (s *DB) ContainedSessions(ctx context.Context, agent string, since time.Time) (int, error) {
	var n int
	err := s.queryRow(ctx, `SELECT COUNT(*) FROM containments WHERE agent = ? AND session_id <> '' AND at_ns >= ?`, agent, since.UnixNano()).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count containments: %w", err)
	}
	return n, nil
}

// Containments returns every containment recorded.
func (s *DB) Containments(ctx context.Context) ([]Containment, error) {
	rows, err := s.query(ctx, `SELECT session_id, agent, level, at_ns FROM containments ORDER BY at_ns`)
	if err != nil {
		return nil, fmt.Errorf("read containments: %w", err)
	}
	defer rows.Close()
	var out []Containment
	for rows.Next() {
		var c Containment
		var ns int64
		if err := rows.Scan(&c.Session, &c.Agent, &c.Level, &ns); err != nil {
			return nil, fmt.Errorf("read containments: %w", err)
		}
		c.At = time.Unix(0, ns)
		out = append(out, c)
	}
	return out, rows.Err()
}
