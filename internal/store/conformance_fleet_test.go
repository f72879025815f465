package store_test

// The store conformance suite: what a fleet of gateways shares beyond the
// log (budgets, rate leases, the change feed, leases, migrations at start).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis-dev/portcullis/internal/approval"
	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/grant"
	"github.com/portcullis-dev/portcullis/internal/store"
	"github.com/portcullis-dev/portcullis/internal/toolreg"
)

// Task budgets: a budget of 10 is 10 calls whoever takes them, however
// concurrently; a delegation takes several at once or none.
func TestConformanceTaskBudgets(t *testing.T) {
	conform(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		s, other := b.open(t), b.open(t)
		var taken atomic.Int64
		concurrently(40, s, other, func(_ int, db *store.DB) {
			_, ok, err := db.ReserveBudget(ctx, "tok-1", 10, 1)
			if err != nil {
				t.Error(err)
			}
			if ok {
				taken.Add(1)
			}
		})
		if taken := taken.Load(); taken != 10 {
			t.Fatalf("%d calls taken from a budget of 10", taken)
		}
		if left, err := other.BudgetLeft(ctx, "tok-1", 10); err != nil || left != 0 {
			t.Fatalf("left %d %v", left, err)
		}
		if left, ok, err := s.ReserveBudget(ctx, "tok-2", 5, 3); !ok || left != 2 || err != nil {
			t.Fatalf("delegate 3 of 5: %d %v %v", left, ok, err)
		}
		if left, ok, _ := other.ReserveBudget(ctx, "tok-2", 5, 3); ok || left != 2 {
			t.Fatalf("delegate 3 more of 5: %d %v", left, ok)
		}
		if left, ok, _ := other.ReserveBudget(ctx, "tok-3", 2, 3); ok || left != 2 {
			t.Fatalf("more than the whole budget: %d %v", left, ok)
		}
		if n, err := s.PruneBudgets(ctx, time.Now().Add(time.Minute)); err != nil || n != 2 {
			t.Fatalf("prune: %d %v", n, err)
		}
	})
}

// The change feed (PostgreSQL): a change to any shared table, by any
// writer, is announced with the table's name; the log is not.
func TestChangeFeed(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b := postgresBackend(t)
	listener, writer := b.open(t), b.open(t)
	heard := make(chan string, 100)
	go listener.Changes(ctx, func(string, error) {}, func(table string) { heard <- table })
	wait := func(table string, write func() error) {
		t.Helper()
		// The first write may come before the feed listens: write again.
		for try := 0; try < 50; try++ {
			if err := write(); err != nil {
				t.Fatal(err)
			}
			deadline := time.After(100 * time.Millisecond)
			for {
				select {
				case got := <-heard:
					if got == table {
						return
					}
					continue
				case <-deadline:
				}
				break
			}
		}
		t.Fatalf("no announcement of %s", table)
	}
	now := time.Now()
	n := 0
	wait("revocations", func() error { n++; return writer.Revoke(ctx, store.RevokeToken, fmt.Sprint("jti-", n), "t", "r") })
	if err := audit.Append(ctx, writer, events(3, now, "quiet")); err != nil {
		t.Fatal(err)
	}
	// Appending to the log announces nothing (a late announcement of the
	// revocations written above may still arrive).
	for quiet := time.After(200 * time.Millisecond); ; {
		select {
		case got := <-heard:
			if got != "revocations" {
				t.Fatalf("appending to the log announced %s", got)
			}
			continue
		case <-quiet:
		}
		break
	}
	wait("grants", func() error {
		n++
		return writer.AddGrant(ctx, grant.Grant{ID: fmt.Sprint("g", n), Agent: "a", Tool: "t", Created: now, Expires: now.Add(time.Hour)})
	})
	wait("tool_pins", func() error {
		n++
		return writer.AddPin(ctx, toolreg.Pin{Upstream: "u", Name: "t", Digest: fmt.Sprint(n), Definition: json.RawMessage(`{}`), State: "pending", SeenAt: now})
	})
	wait("policy_pointers", func() error { return writer.SetPolicyPointer(ctx, "rollback", "v1", "t") })
	wait("approvals", func() error {
		n++
		return writer.AddApproval(ctx, &approval.Request{ID: fmt.Sprint("ap", n), Agent: "a", Tool: "t", Created: now, Expires: now.Add(time.Minute), State: approval.Pending})
	})
	wait("agent_instances", func() error {
		return writer.PutInstance(ctx, store.Instance{SPIFFEID: "spiffe://x/a", Agent: "a", Serial: "1", NotAfter: now, State: "active"})
	})
	wait("containments", func() error {
		n++
		return writer.Contain(ctx, store.Containment{Session: fmt.Sprint("s", n), Agent: "a", Level: 3, At: now})
	})
	// SQLite has no feed: Changes returns at once.
	done := make(chan struct{})
	go func() { sqliteBackend(t).open(t).Changes(ctx, nil, nil); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Changes on SQLite did not return")
	}
}

// Fleet rate caps: leases from several gateways at once never grant more
// than the minute's limit, and grant all of it when asked for more.
func TestConformanceRateLeases(t *testing.T) {
	conform(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		s, other := b.open(t), b.open(t)
		var total atomic.Int64
		concurrently(30, s, other, func(_ int, db *store.DB) {
			n, err := db.LeaseRate(ctx, "agent-a", 1000, 50, 3)
			if err != nil {
				t.Error(err)
			}
			total.Add(int64(n))
		})
		if total.Load() != 50 {
			t.Fatalf("30 leases of 3 from a limit of 50 granted %d", total.Load())
		}
		if n, _ := s.LeaseRate(ctx, "agent-a", 1000, 50, 1); n != 0 {
			t.Fatalf("a spent minute granted %d", n)
		}
		if n, _ := s.LeaseRate(ctx, "agent-a", 1001, 50, 80); n != 50 {
			t.Fatalf("a new minute granted %d of 50", n)
		}
		if n, _ := other.LeaseRate(ctx, "agent-b", 1000, 50, 5); n != 5 {
			t.Fatalf("another agent granted %d", n)
		}
		if err := s.PruneRates(ctx, 1001); err != nil {
			t.Fatal(err)
		}
		if n, _ := s.LeaseRate(ctx, "agent-a", 1000, 50, 5); n != 5 {
			t.Fatalf("a pruned minute granted %d", n)
		}
	})
}

// A PostgreSQL database that commits asynchronously is refused: an
// acknowledged event could be lost with it.
func TestAsynchronousDatabaseRefused(t *testing.T) {
	ctx := context.Background()
	b := postgresBackend(t)
	s := b.open(t)
	// The role's setting, as an operator (or a pooler) might leave it.
	if err := s.ExecForTest(ctx, `ALTER ROLE postgres IN DATABASE `+dbName(b.where)+` SET synchronous_commit = off`); err != nil {
		t.Fatal(err)
	}
	if _, err := store.OpenPostgres(ctx, b.where, store.Options{}); !errors.Is(err, store.ErrAsyncCommit) {
		t.Fatalf("asynchronous database opened: %v", err)
	}
}

func dbName(dsn string) string {
	name := strings.TrimPrefix(dsn, "postgres:///")
	name, _, _ = strings.Cut(name, "?")
	return name
}

// A lease has one holder in the fleet; released, another takes it; its
// holder's connection killed, the holder hears it is lost and the lease
// is free.
func TestLease(t *testing.T) {
	ctx := context.Background()
	b := postgresBackend(t)
	a, c := b.open(t), b.open(t)
	lostA, releaseA, ok, err := a.Lease(ctx, "export")
	if err != nil || !ok {
		t.Fatalf("first lease: %v %v", ok, err)
	}
	if _, _, ok, err := c.Lease(ctx, "export"); ok || err != nil {
		t.Fatalf("a held lease granted twice: %v %v", ok, err)
	}
	releaseA()
	lostC, _, ok, err := c.Lease(ctx, "export")
	if err != nil || !ok {
		t.Fatalf("a released lease not granted: %v %v", ok, err)
	}
	<-lostA // released: its watcher is done
	// The holder's connection dies (the database ends its session).
	if err := a.ExecForTest(ctx, `SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND pid != pg_backend_pid() AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`); err != nil {
		t.Fatal(err)
	}
	select {
	case <-lostC:
	case <-time.After(10 * time.Second):
		t.Fatal("a lease whose connection died was not reported lost")
	}
	if _, release, ok, err := a.Lease(ctx, "export"); !ok || err != nil {
		t.Fatalf("a lost lease is not free: %v %v", ok, err)
	} else {
		release()
	}
	// SQLite: one gateway, always granted.
	if _, release, ok, err := sqliteBackend(t).open(t).Lease(ctx, "export"); !ok || err != nil {
		t.Fatalf("sqlite lease: %v %v", ok, err)
	} else {
		release()
	}
}

// Gateways starting together on a new database migrate it once: every
// one opens it (they take turns on the migration lock).
func TestConcurrentFirstStart(t *testing.T) {
	b := postgresBackend(t)
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			s, err := store.OpenPostgres(context.Background(), b.where, store.Options{})
			if err == nil {
				s.Close()
			}
			errs <- err
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatalf("a gateway starting with others: %v", err)
		}
	}
	m, err := b.open(t).MigrationStatus(context.Background())
	if err != nil || m.Version != store.SchemaVersion() {
		t.Fatalf("%+v %v", m, err)
	}
}

// Agent sessions: recorded once, taken up by another gateway only while
// alive (not ended, seen within the idle timeout), labels only ever added,
// from any gateway, and read back with the session's state in one go.
func TestConformanceSessions(t *testing.T) {
	conform(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		a, other := b.open(t), b.open(t)
		now := time.Now()
		sess := store.AgentSession{ID: "s1", Agent: "agent-a", User: "alice", Version: "2025-11-25",
			ClientCaps: []byte(`{"sampling":{}}`), ClientInfo: []byte(`{"name":"c","version":"1"}`), Created: now, Seen: now}
		if err := a.PutSession(ctx, sess); err != nil {
			t.Fatal(err)
		}
		if err := other.PutSession(ctx, sess); !errors.Is(err, store.ErrSessionExists) {
			t.Fatalf("the same ID twice: %v", err)
		}
		got, ok, err := other.Session(ctx, "s1")
		if err != nil || !ok || got.Agent != "agent-a" || got.User != "alice" || got.Version != "2025-11-25" ||
			string(got.ClientCaps) != `{"sampling":{}}` || string(got.ClientInfo) != `{"name":"c","version":"1"}` || got.Moved || got.Ended {
			t.Fatalf("read back: %+v %v %v", got, ok, err)
		}
		if _, ok, err := other.Session(ctx, "nope"); ok || err != nil {
			t.Fatalf("unknown session: %v %v", ok, err)
		}
		st, err := other.SessionState(ctx, "s1")
		if err != nil || !st.Found || st.Moved || st.Ended || len(st.Labels) != 0 {
			t.Fatalf("state: %+v %v", st, err)
		}
		// Labels from two gateways at once: every one kept, none twice.
		concurrently(20, a, other, func(i int, db *store.DB) {
			if err := db.AddSessionLabels(ctx, "s1", []string{fmt.Sprint("l", i%4), "untrusted_input"}); err != nil {
				t.Error(err)
			}
		})
		st, err = a.SessionState(ctx, "s1")
		if want := "[l0 l1 l2 l3 untrusted_input]"; err != nil || fmt.Sprint(st.Labels) != want {
			t.Fatalf("labels %v %v, want %s", st.Labels, err, want)
		}
		// Taken up: not when idle too long, once alive; then moved.
		if ok, err := other.TakeUpSession(ctx, "s1", now, now.Add(time.Second)); ok || err != nil {
			t.Fatalf("idle session taken up: %v %v", ok, err)
		}
		if ok, err := other.TakeUpSession(ctx, "s1", now.Add(time.Second), now.Add(-time.Minute)); !ok || err != nil {
			t.Fatalf("take up: %v %v", ok, err)
		}
		if st, _ := a.SessionState(ctx, "s1"); !st.Moved {
			t.Fatal("taken up, not marked moved")
		}
		if err := a.SeenSession(ctx, "s1", now.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		if err := a.SeenSession(ctx, "s1", now); err != nil { // never back
			t.Fatal(err)
		}
		if got, _, _ := other.Session(ctx, "s1"); !got.Seen.Equal(time.Unix(0, now.Add(time.Minute).UnixNano())) {
			t.Fatalf("seen %v", got.Seen)
		}
		// Ended: never taken up again.
		if err := other.EndSession(ctx, "s1", now); err != nil {
			t.Fatal(err)
		}
		if st, _ := a.SessionState(ctx, "s1"); !st.Ended {
			t.Fatal("ended session not ended")
		}
		if ok, err := a.TakeUpSession(ctx, "s1", now, now.Add(-time.Hour)); ok || err != nil {
			t.Fatalf("ended session taken up: %v %v", ok, err)
		}
		// Pruned with its labels and containment; the agent's stays.
		if err := a.Contain(ctx, store.Containment{Session: "s1", Agent: "agent-a", Level: 2, At: now}); err != nil {
			t.Fatal(err)
		}
		if err := a.Contain(ctx, store.Containment{Agent: "agent-a", Level: 3, At: now}); err != nil {
			t.Fatal(err)
		}
		if n, err := a.PruneSessions(ctx, now.Add(2*time.Minute)); err != nil || n != 1 {
			t.Fatalf("prune: %d %v", n, err)
		}
		if st, err := a.SessionState(ctx, "s1"); err != nil || st.Found || len(st.Labels) != 0 {
			t.Fatalf("pruned session: %+v %v", st, err)
		}
		cs, err := other.Containments(ctx)
		if err != nil || len(cs) != 1 || cs[0].Session != "" || cs[0].Agent != "agent-a" {
			t.Fatalf("containments after prune: %+v %v", cs, err)
		}
	})
}

// Containments: never weakened by a later, weaker one; lifted by an
// operator's release (recorded for the gateways that watch releases) or
// by Uncontain.
func TestConformanceContainments(t *testing.T) {
	conform(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		a, other := b.open(t), b.open(t)
		now := time.Now()
		for _, c := range []store.Containment{
			{Session: "s1", Agent: "x", Level: 3, At: now},
			{Session: "s1", Agent: "x", Level: 1, At: now.Add(time.Second)}, // weaker: ignored
			{Session: "s2", Agent: "x", Level: 1, At: now},
			{Session: "s2", Agent: "x", Level: 2, At: now.Add(time.Second)}, // stronger: kept
			{Agent: "y", Level: 3, At: now},
		} {
			if err := a.Contain(ctx, c); err != nil {
				t.Fatal(err)
			}
		}
		levels := func() string {
			t.Helper()
			cs, err := other.Containments(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			for _, c := range cs {
				out = append(out, fmt.Sprintf("%s/%s=%d", c.Session, c.Agent, c.Level))
			}
			return strings.Join(out, " ")
		}
		if got, want := levels(), "s1/x=3 /y=3 s2/x=2"; got != want {
			t.Fatalf("containments %q, want %q", got, want)
		}
		// Escalation counts an agent's contained sessions, not its own hold.
		for agent, want := range map[string]int{"x": 2, "y": 0} {
			if n, err := other.ContainedSessions(ctx, agent, now.Add(-time.Second)); err != nil || n != want {
				t.Fatalf("contained sessions of %s: %d %v, want %d", agent, n, err, want)
			}
		}
		if n, _ := other.ContainedSessions(ctx, "x", now.Add(time.Hour)); n != 0 {
			t.Fatalf("contained sessions in the future: %d", n)
		}
		if err := other.AddRelease(ctx, "s1", "", "op"); err != nil {
			t.Fatal(err)
		}
		if err := a.Uncontain(ctx, "", "y"); err != nil {
			t.Fatal(err)
		}
		if got, want := levels(), "s2/x=2"; got != want {
			t.Fatalf("after release: %q, want %q", got, want)
		}
		if rs, err := a.Releases(ctx, 0); err != nil || len(rs) != 1 || rs[0].Session != "s1" {
			t.Fatalf("release recorded: %+v %v", rs, err)
		}
	})
}
