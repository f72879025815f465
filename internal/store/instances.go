package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// ErrJoinToken is returned for a join token that is unknown, used or expired.
var ErrJoinToken = errors.New("join token invalid, used or expired")

func hashToken(t string) string {
	s := sha256.Sum256([]byte(t))
	return hex.EncodeToString(s[:])
}

// AddJoinToken stores a one-time join token (only its hash).
func (s *DB) AddJoinToken(ctx context.Context, token, agent string, expires time.Time) error {
	_, err := s.exec(ctx, `INSERT INTO join_tokens(hash, agent, expires_ns) VALUES (?,?,?)`, hashToken(token), agent, expires.UnixNano())
	if err != nil {
		return fmt.Errorf("add join token: %w", err)
	}
	return nil
}

// UseJoinToken consumes a join token and returns its agent. A token works
// once, before it expires.
func (s *DB) UseJoinToken(ctx context.Context, token string, now time.Time) (string, error) {
	return s.useOnce(ctx, "join_tokens", "agent", token, now, ErrJoinToken)
}

// useOnce consumes a one-time token of table (join_tokens,
// console_links) and returns its owner column: once, before it expires;
// gone is the error otherwise.
func (s *DB) useOnce(ctx context.Context, table, owner, token string, now time.Time, gone error) (string, error) {
	h := hashToken(token)
	res, err := s.exec(ctx, `UPDATE `+table+` SET used = 1 WHERE hash = ? AND used = 0 AND expires_ns > ?`, h, now.UnixNano())
	if err != nil {
		return "", fmt.Errorf("use %s: %w", table, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return "", gone
	}
	var who string
	if err := s.queryRow(ctx, `SELECT `+owner+` FROM `+table+` WHERE hash = ?`, h).Scan(&who); err != nil {
		return "", fmt.Errorf("use %s: %w", table, err)
	}
	return who, nil
}

// Instance is an enrolled agent instance.
type Instance struct {
	SPIFFEID string
	Agent    string
	Serial   string
	NotAfter time.Time
	State    string // active, rotated, revoked
	Updated  time.Time
}

// PutInstance records an instance's current SVID.
func (s *DB) PutInstance(ctx context.Context, in Instance) error {
	_, err := s.exec(ctx, `INSERT INTO agent_instances(spiffe_id, agent, serial, not_after_ns, state, updated_ns) VALUES (?,?,?,?,?,?)
		ON CONFLICT(spiffe_id) DO UPDATE SET serial = excluded.serial, not_after_ns = excluded.not_after_ns, state = excluded.state, updated_ns = excluded.updated_ns`,
		in.SPIFFEID, in.Agent, in.Serial, in.NotAfter.UnixNano(), in.State, time.Now().UnixNano())
	if err != nil {
		return fmt.Errorf("put instance: %w", err)
	}
	return nil
}

// Instances lists enrolled instances.
func (s *DB) Instances(ctx context.Context) ([]Instance, error) {
	rows, err := s.query(ctx, `SELECT spiffe_id, agent, serial, not_after_ns, state, updated_ns FROM agent_instances ORDER BY agent, spiffe_id`)
	if err != nil {
		return nil, fmt.Errorf("read instances: %w", err)
	}
	defer rows.Close()
	var out []Instance
	for rows.Next() {
		var in Instance
		var na, up int64
		if err := rows.Scan(&in.SPIFFEID, &in.Agent, &in.Serial, &na, &in.State, &up); err != nil {
			return nil, fmt.Errorf("read instances: %w", err)
		}
		in.NotAfter, in.Updated = time.Unix(0, na).UTC(), time.Unix(0, up).UTC()
		out = append(out, in)
	}
	return out, rows.Err()
}

// ErrConsoleLink: the sign-in link is unknown, used or expired.
var ErrConsoleLink = errors.New("sign-in link unknown, already used or expired")

// AddConsoleLink stores a one-time console sign-in link (its hash).
func (s *DB) AddConsoleLink(ctx context.Context, token, admin string, expires time.Time) error {
	_, err := s.exec(ctx, `INSERT INTO console_links(hash, admin, expires_ns) VALUES (?,?,?)`, hashToken(token), admin, expires.UnixNano())
	if err != nil {
		return fmt.Errorf("add console link: %w", err)
	}
	return nil
}

// UseConsoleLink consumes a sign-in link and returns the admin it is for:
// once, before it expires.
func (s *DB) UseConsoleLink(ctx context.Context, token string, now time.Time) (string, error) {
	return s.useOnce(ctx, "console_links", "admin", token, now, ErrConsoleLink)
}
