// Package memory is Portcullis' governed agent memory (the framework's
// seventh phase; T5, memory and context poisoning): a knowledge graph and
// key/value notes, served as the built-in upstream `builtin: memory` with
// the tools of the reference memory server.
//
// Every element belongs to a scope, resolved against the caller the
// gateway vouches for (never against what the agent says): its user, its
// agent, its task, its session, or a shared scope the operator created.
// A compromised session names no other user's or session's scope: there
// is no syntax for it. Shared scopes are reached by name, and policy
// decides (the `scope` argument is in Cedar's context.arguments).
//
// Every element records who wrote it (agent, user, task, session,
// request) and under which conditions (the session's labels, whether its
// values came from untrusted output, screening findings). Every change is
// a new version whose SHA-256 is committed to the audit log before the
// version is stored; every read re-hashes the current versions and checks
// them against the log: a mismatch is never returned, and is an alert. An
// element written from untrusted provenance or with a finding is
// quarantined: stored, never returned to agents, visible to operators
// until released or purged. Reading memory gives the session the labels
// of what it read: memory does not launder provenance.
package memory

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/identity"
	"github.com/portcullis-dev/portcullis/internal/reason"
	"github.com/portcullis-dev/portcullis/internal/store"
)

// Element kinds.
const (
	KindEntity      = "entity"
	KindObservation = "observation"
	KindRelation    = "relation"
	KindValue       = "value"
)

// Element states.
const (
	Active      = "active"
	Quarantined = "quarantined"
	Deleted     = "deleted"
	Expired     = "expired"
	Purged      = "purged"
)

// Labels a session carries that make what it writes untrusted.
var untrustedLabels = []string{"untrusted_input", "prompt_injection"}

// Caller is who calls, as the gateway vouches for it.
type Caller = identity.Caller

// MetaCaller is the request _meta key the gateway sets (overwriting what
// an agent sent) on calls to the built-in memory; MetaLabels is the result
// _meta key with the labels of what was read.
const (
	MetaCaller = identity.MetaCaller
	MetaLabels = "dev.portcullis/labels"
)

// TTL is how long elements live, by trust.
type TTL struct {
	Default   time.Duration // 0: forever
	Untrusted time.Duration // elements written from untrusted provenance or with findings (0: Default)
	Session   time.Duration // elements of session scopes (0: Default)
}

// Options configure a Service.
type Options struct {
	Store *store.DB
	// Record writes an audit event durably (the gateway's recorder).
	Record func(ctx context.Context, e *audit.Event) error
	// Screen returns the screening categories found in written text
	// (prompt_injection, secret, personal_data, ...).
	Screen func(text string) []string
	// Alert is told of a version that failed verification.
	Alert func(e *audit.Event)
	// Shared are the shared scopes operators created ("team": scope
	// "shared:team").
	Shared []string
	TTL    TTL
	Now    func() time.Time
}

// Service is the memory service.
type Service struct {
	o  Options
	mu sync.Mutex // writes, one at a time (versions are numbered in order)

	hmu     sync.Mutex
	hashes  map[int64]string // committed hashes by version ID, from the audit log
	scanned int64            // the log's seq read up to
	alerted map[int64]bool   // versions already reported as failing verification
}

// New returns a service over o.Store.
func New(o Options) *Service {
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Service{o: o, hashes: map[int64]string{}, alerted: map[int64]bool{}}
}

// ErrScope: a scope that is not the caller's, or not configured.
var ErrScope = errors.New("memory: no such scope for this caller")

// Scope resolves a scope as the caller names it: "" (its user's, or its
// agent's when it acts for no user), "user", "agent", "task", "session",
// or "shared:NAME".
func (s *Service) Scope(c Caller, name string) (string, error) {
	switch {
	case name == "" && c.User != "":
		return "user:" + c.User, nil
	case name == "" || name == "agent":
		if c.Agent == "" {
			return "", ErrScope
		}
		if c.User != "" {
			// Acting for a user, the agent's own memory is still that
			// user's: no channel from one user to another.
			return "agent:" + c.Agent + "/user:" + c.User, nil
		}
		return "agent:" + c.Agent, nil
	case name == "user" && c.User != "":
		return "user:" + c.User, nil
	case name == "task" && c.Task != "":
		return "task:" + c.Task, nil
	case name == "session" && c.Session != "":
		return "session:" + c.Session, nil
	}
	if n, ok := strings.CutPrefix(name, "shared:"); ok && slices.Contains(s.o.Shared, n) {
		return name, nil
	}
	return "", fmt.Errorf("%w: %q", ErrScope, name)
}

// hashOf is a version's SHA-256 over its canonical encoding.
func hashOf(e *store.MemoryElement) string {
	b, _ := json.Marshal(struct {
		ID                                int64
		Scope, Key, Kind                  string
		Body                              []byte
		State, Agent, User, Task, Session string
		RequestID                         string
		Labels                            []string
		Untrusted                         bool
		Findings                          []string
		By                                string
		Created, Expires                  int64
	}{e.ID, e.Scope, e.Key, e.Kind, e.Body, e.State, e.Agent, e.User, e.Task, e.Session, e.RequestID,
		e.Labels, e.Untrusted, e.Findings, e.By, e.Created.UnixNano(), nanos(e.Expires)})
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// change is one element to write.
type change struct {
	key, kind string
	body      []byte
	state     string // Active (to be screened) or Deleted
	text      string // what to screen
}

// write stores changes in scope for caller c as new versions. Elements
// written from untrusted provenance or with findings are quarantined; it
// returns how many.
func (s *Service) write(ctx context.Context, c Caller, by, scope string, cs []change, code reason.Code, detail string) (int, error) {
	if len(cs) == 0 {
		return 0, nil
	}
	now := s.o.Now()
	untrusted := len(c.UntrustedArguments) > 0
	for _, l := range c.Labels {
		untrusted = untrusted || slices.Contains(untrustedLabels, l)
	}
	labels := slices.Clone(c.Labels)
	if len(c.UntrustedArguments) > 0 && !slices.Contains(labels, "untrusted_input") {
		labels = append(labels, "untrusted_input")
	}
	if by == "" {
		by = c.Agent
	}
	if len(cs) > maxChanges {
		return 0, fmt.Errorf("memory: at most %d elements a call", maxChanges)
	}
	adds := 0
	for _, ch := range cs {
		if ch.state == Active {
			adds++
		} else if untrusted || len(c.Findings) > 0 {
			// A session that read untrusted input deletes nothing: an
			// injected "forget the rule" would otherwise act at once.
			return 0, errors.New("memory: a session that read untrusted input (or sent findings) cannot delete memory; an operator can (portcullis memory quarantine|purge)")
		}
	}
	if adds > 0 {
		n, err := s.o.Store.CountMemory(ctx, scope)
		if err != nil {
			return 0, err
		}
		if n+adds > maxPerScope {
			return 0, fmt.Errorf("memory: the scope holds %d elements, at most %d", n, maxPerScope)
		}
	}
	var es []store.MemoryElement
	quarantined := 0
	var findings []string
	for _, ch := range cs {
		e := store.MemoryElement{Scope: scope, Key: ch.key, Kind: ch.kind, Body: ch.body, State: ch.state,
			Agent: c.Agent, User: c.User, Task: c.Task, Session: c.Session, RequestID: c.RequestID, Labels: labels,
			Untrusted: untrusted, Findings: slices.Clone(c.Findings), By: by, Created: now}
		if ch.state == Active {
			if s.o.Screen != nil && ch.text != "" {
				for _, f := range s.o.Screen(ch.text) {
					if !slices.Contains(e.Findings, f) {
						e.Findings = append(e.Findings, f)
					}
				}
			}
			if e.Untrusted || len(e.Findings) > 0 {
				e.State = Quarantined
				quarantined++
				for _, f := range e.Findings {
					if !slices.Contains(findings, f) {
						findings = append(findings, f)
					}
				}
			}
			e.Expires = s.expiry(scope, e.State == Quarantined || e.Untrusted, now)
		}
		es = append(es, e)
	}
	ev := audit.New(audit.TypeMemory, audit.OutcomeInfo, code, now, audit.Subject{Agent: c.Agent, User: c.User, Task: c.Task, SessionID: c.Session, RequestID: c.RequestID})
	ev.Target, ev.Labels, ev.Detail = scope, labels, detail
	if quarantined > 0 {
		ev.Detail += fmt.Sprintf("; %d quarantined (untrusted provenance %v, findings %v)", quarantined, untrusted, findings)
	}
	return quarantined, s.commit(ctx, es, ev)
}

// commit numbers versions, commits their hashes to the audit log (in ev)
// and then stores them: a version is never readable before its hash is in
// the log.
func (s *Service) commit(ctx context.Context, es []store.MemoryElement, ev *audit.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	// IDs reserved for this write alone (another process, the CLI, may
	// write at the same time): a committed hash is never for another
	// version's ID.
	first, err := s.o.Store.ReserveMemoryIDs(ctx, len(es))
	if err != nil {
		return err
	}
	ev.Memory = nil
	for i := range es {
		e := &es[i]
		e.ID = first + int64(i)
		h := hashOf(e)
		e.SHA256 = mustHex(h)
		ev.Memory = append(ev.Memory, audit.MemoryRef{ID: e.ID, Scope: e.Scope, Key: keyDigest(e.Key), State: e.State, SHA256: h})
	}
	if err := s.o.Record(ctx, ev); err != nil {
		return fmt.Errorf("memory: audit: %w", err)
	}
	s.hmu.Lock()
	for _, r := range ev.Memory {
		if _, ok := s.hashes[r.ID]; !ok {
			s.hashes[r.ID] = r.SHA256
		}
	}
	s.hmu.Unlock()
	return s.o.Store.AddMemory(ctx, es)
}

// keyDigest stands for a key (which may hold a name) in the audit log.
func keyDigest(k string) string {
	h := sha256.Sum256([]byte(k))
	return hex.EncodeToString(h[:8])
}

// Bounds of the service.
const (
	maxChanges  = 2000   // versions one call writes
	maxPerScope = 20_000 // current elements a scope holds
)

func (s *Service) expiry(scope string, untrusted bool, now time.Time) time.Time {
	t := s.o.TTL.Default
	if strings.HasPrefix(scope, "session:") && s.o.TTL.Session > 0 {
		t = s.o.TTL.Session
	}
	if untrusted && s.o.TTL.Untrusted > 0 && (t == 0 || s.o.TTL.Untrusted < t) {
		t = s.o.TTL.Untrusted
	}
	if t == 0 {
		return time.Time{}
	}
	return now.Add(t)
}

// committed returns the hash the audit log holds for version id, reading
// the log on from where it stopped when the version is not known yet
// (written by another process).
func (s *Service) committed(ctx context.Context, id int64) (string, bool) {
	s.hmu.Lock()
	defer s.hmu.Unlock()
	if h, ok := s.hashes[id]; ok {
		return h, true
	}
	for {
		rows, err := s.o.Store.Events(ctx, store.EventQuery{AfterSeq: s.scanned, Types: []string{string(audit.TypeMemory)}, Limit: 1000})
		if err != nil || len(rows) == 0 {
			break
		}
		for _, r := range rows {
			s.scanned = r.Seq
			e, err := audit.Decode(r)
			if err != nil || e.Outcome != audit.OutcomeInfo || e.Code == reason.MemoryTampered {
				continue // only commitments count, never a report of a mismatch
			}
			for _, m := range e.Memory {
				if _, ok := s.hashes[m.ID]; !ok { // the first commitment of an ID stands
					s.hashes[m.ID] = m.SHA256
				}
			}
		}
	}
	h, ok := s.hashes[id]
	return h, ok
}

// verified reads the current versions of scopes (active ones, unexpired),
// each re-hashed and checked against the audit log; a version that fails
// is left out and reported.
func (s *Service) verified(ctx context.Context, c Caller, scopes []string, kinds ...string) ([]store.MemoryElement, error) {
	es, err := s.o.Store.MemoryElements(ctx, store.MemoryQuery{Scopes: scopes, Kinds: kinds, Current: true})
	if err != nil {
		return nil, err
	}
	now := s.o.Now()
	out := es[:0]
	for _, e := range es {
		if e.State != Active || !e.Expires.IsZero() && now.After(e.Expires) {
			continue
		}
		if !s.check(ctx, c, e) {
			continue
		}
		out = append(out, e)
	}
	return out, nil
}

func mustHex(s string) []byte {
	b, _ := hex.DecodeString(s)
	return b
}

// check verifies a version against the hash the audit log committed; a
// failure is reported (once per version) and the version is not to be
// used.
func (s *Service) check(ctx context.Context, c Caller, e store.MemoryElement) bool {
	got := hashOf(&e)
	want, ok := s.committed(ctx, e.ID)
	if ok && got == want && bytes.Equal(e.SHA256, mustHex(want)) {
		return true
	}
	s.hmu.Lock()
	seen := s.alerted[e.ID]
	if len(s.alerted) < 100_000 {
		s.alerted[e.ID] = true
	}
	s.hmu.Unlock()
	if !seen {
		s.integrityFailure(ctx, c, e, got, want, ok)
	}
	return false
}

// carry is the content an operation may carry from e into a new version:
// none, when e does not verify (a tampered row is never re-hashed into a
// verified one).
func (s *Service) carry(ctx context.Context, c Caller, e store.MemoryElement) []byte {
	if e.Body == nil || !s.check(ctx, c, e) {
		return nil
	}
	return e.Body
}

func (s *Service) integrityFailure(ctx context.Context, c Caller, e store.MemoryElement, got, want string, known bool) {
	ev := audit.New(audit.TypeMemory, audit.OutcomeDeny, reason.MemoryTampered, s.o.Now(),
		audit.Subject{Agent: c.Agent, User: c.User, Task: c.Task, SessionID: c.Session, RequestID: c.RequestID})
	ev.Target = e.Scope
	// No memory refs: a report of a mismatch commits nothing.
	if known {
		ev.Detail = fmt.Sprintf("version %d (key %s) hashes to %s, not the %s the audit log committed: not returned", e.ID, keyDigest(e.Key), got, want)
	} else {
		ev.Detail = fmt.Sprintf("version %d (key %s) hashes to %s, and the audit log committed no hash for it: not returned", e.ID, keyDigest(e.Key), got)
	}
	if err := s.o.Record(ctx, ev); err != nil {
		ev.Detail += " (audit: " + err.Error() + ")"
	}
	if s.o.Alert != nil {
		s.o.Alert(ev)
	}
}

// labelsOf are the labels a reader takes from what it read: the writer's
// session labels, untrusted_input for untrusted writes, and what
// screening found (an injection: prompt_injection and untrusted_input; a
// secret or personal data: confidential), released elements included.
func labelsOf(es []store.MemoryElement) []string {
	var out []string
	add := func(l string) {
		if !slices.Contains(out, l) {
			out = append(out, l)
		}
	}
	for _, e := range es {
		for _, l := range e.Labels {
			add(l)
		}
		if e.Untrusted {
			add("untrusted_input")
		}
		for _, f := range e.Findings {
			switch f {
			case "prompt_injection", "exfiltration":
				add("prompt_injection")
				add("untrusted_input")
			case "secret", "personal_data":
				add("confidential")
			}
		}
	}
	slices.Sort(out)
	return out
}
