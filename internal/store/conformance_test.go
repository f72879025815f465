package store_test

// The store conformance suite: every backend runs the same tests. SQLite
// runs everywhere; PostgreSQL runs on a real server started by pgtest
// (skipped where PostgreSQL is not installed, a failure under CI).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/portcullis-dev/portcullis/internal/approval"
	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/grant"
	"github.com/portcullis-dev/portcullis/internal/pgtest"
	"github.com/portcullis-dev/portcullis/internal/store"
	"github.com/portcullis-dev/portcullis/internal/toolreg"
)

func TestMain(m *testing.M) {
	if os.Getenv("STORE_CRASH_HELPER") != "" {
		if os.Getenv("STORE_CRASH_RECORDER") != "" {
			crashRecorder()
		} else {
			crashHelper()
		}
		return
	}
	code := m.Run()
	pgtest.Stop()
	os.Exit(code)
}

// backend opens handles on one database of a backend; every call to open
// returns a new handle (a new "process") on the same database.
type backend struct {
	name string
	// where identifies the database for a helper process.
	where string
	open  func(t *testing.T) *store.DB
}

func sqliteBackend(t *testing.T) backend {
	p := filepath.Join(t.TempDir(), "portcullis.db")
	return backend{name: "sqlite", where: p, open: func(t *testing.T) *store.DB {
		s, err := store.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}}
}

func postgresBackend(t *testing.T) backend {
	dsn := pgtest.DSN(t)
	return backend{name: "postgres", where: dsn, open: func(t *testing.T) *store.DB {
		s, err := store.OpenPostgres(context.Background(), dsn, store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}}
}

// openStore opens the database of backend name ("sqlite": a file path;
// "postgres": a URL) as a gateway or a helper process would.
func openStore(name, where string) (*store.DB, error) {
	if name == "postgres" {
		return store.OpenPostgres(context.Background(), where, store.Options{})
	}
	return store.Open(where)
}

// conform runs fn against every backend, each on a fresh database.
func conform(t *testing.T, fn func(t *testing.T, b backend)) {
	t.Run("sqlite", func(t *testing.T) { fn(t, sqliteBackend(t)) })
	t.Run("postgres", func(t *testing.T) { fn(t, postgresBackend(t)) })
}

// concurrently runs fn n times at once, alternating between two handles
// (two gateways), and waits for them.
func concurrently(n int, a, b *store.DB, fn func(i int, db *store.DB)) {
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		db := a
		if i%2 == 1 {
			db = b
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(i, db)
		}()
	}
	wg.Wait()
}

func events(n int, base time.Time, session string) []*audit.Event {
	out := make([]*audit.Event, n)
	for i := range out {
		e := audit.New(audit.TypeDecision, audit.OutcomeAllow, "allowed", base.Add(time.Duration(i)*time.Second), audit.Subject{Agent: "agent-" + strconv.Itoa(i%3), SessionID: session})
		e.RequestID = fmt.Sprintf("req-%s-%d", session, i)
		e.TraceID = fmt.Sprintf("%032x", i+1)
		out[i] = e
	}
	return out
}

func verify(t *testing.T, s *store.DB) *audit.Report {
	t.Helper()
	_, vkey, err := note.GenerateKey(nil, "test")
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := audit.Verify(context.Background(), s, v, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		t.Fatalf("audit verify: %v", rep.Problems)
	}
	return rep
}

func TestConformanceLogAppendAndQuery(t *testing.T) {
	conform(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		s := b.open(t)
		if st, err := s.State(ctx); err != nil || st.Size != 0 {
			t.Fatalf("empty log: %+v %v", st, err)
		}
		base := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
		if err := audit.Append(ctx, s, events(10, base, "s1")); err != nil {
			t.Fatal(err)
		}
		more := events(5, base.Add(time.Hour), "s2")
		more[4] = audit.New(audit.TypeUpstream, audit.OutcomeInfo, "started", base.Add(2*time.Hour), audit.Subject{})
		more[4].Detail = "needle-in-the-body"
		if err := audit.Append(ctx, s, more); err != nil {
			t.Fatal(err)
		}
		st, err := s.State(ctx)
		if err != nil || st.Size != 15 {
			t.Fatalf("state: %+v %v", st, err)
		}
		if rep := verify(t, s); rep.Events != 15 {
			t.Fatalf("verified %d events", rep.Events)
		}
		for _, tc := range []struct {
			name string
			q    store.EventQuery
			want []int64
		}{
			{"all", store.EventQuery{}, seqs(1, 15)},
			{"after", store.EventQuery{AfterSeq: 12}, seqs(13, 15)},
			{"request", store.EventQuery{RequestID: "req-s1-3"}, []int64{4}},
			{"trace", store.EventQuery{TraceID: fmt.Sprintf("%032x", 2)}, []int64{2, 12}},
			{"agent", store.EventQuery{Agent: "agent-1"}, []int64{2, 5, 8, 12}},
			{"session", store.EventQuery{SessionID: "s2"}, seqs(11, 14)},
			{"type", store.EventQuery{Types: []string{string(audit.TypeUpstream)}}, []int64{15}},
			{"types", store.EventQuery{Types: []string{string(audit.TypeUpstream), string(audit.TypeDecision)}, Limit: 3, Last: true}, []int64{13, 14, 15}},
			{"body", store.EventQuery{BodyContains: "needle-in-the"}, []int64{15}},
			{"limit", store.EventQuery{Limit: 2}, []int64{1, 2}},
			{"last", store.EventQuery{SessionID: "s1", Limit: 2, Last: true}, []int64{9, 10}},
		} {
			rows, err := s.Events(ctx, tc.q)
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			var got []int64
			for _, r := range rows {
				got = append(got, r.Seq)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
			}
		}
		if n, err := s.CountEvents(ctx, string(audit.TypeDecision), 5); err != nil || n != 9 {
			t.Errorf("count: %d %v", n, err)
		}
		if n, err := s.CountEventsBetween(ctx, string(audit.TypeDecision), 5, 10); err != nil || n != 5 {
			t.Errorf("count between: %d %v", n, err)
		}
		if seq, err := s.SeqSince(ctx, base.Add(time.Hour)); err != nil || seq != 11 {
			t.Errorf("seq since: %d %v", seq, err)
		}
		// Bodies are as written, byte for byte, and decode to the events.
		rows, _ := s.Events(ctx, store.EventQuery{AfterSeq: 14})
		e, err := audit.Decode(rows[0])
		if err != nil || e.Detail != "needle-in-the-body" || e.Seq != 15 || !rows[0].Time.Equal(base.Add(2*time.Hour)) {
			t.Fatalf("decoded %+v %v", e, err)
		}
		// Retention prunes bodies, never leaf hashes: the log still verifies.
		if n, err := s.PruneBodies(ctx, base.Add(30*time.Minute)); err != nil || n != 10 {
			t.Fatalf("prune: %d %v", n, err)
		}
		if rep := verify(t, s); rep.Pruned != 10 {
			t.Fatalf("pruned %d", rep.Pruned)
		}
		// An empty batch and a misnumbered batch write nothing.
		if err := s.AppendLog(ctx, func(store.LogState) ([]store.EventRow, store.LogState, error) {
			return nil, store.LogState{}, nil
		}); !errors.Is(err, store.ErrEmptyBatch) {
			t.Fatalf("empty batch: %v", err)
		}
		if err := s.AppendLog(ctx, func(st store.LogState) ([]store.EventRow, store.LogState, error) {
			return []store.EventRow{{Seq: st.Size + 2, LeafHash: []byte{1}}}, store.LogState{Size: st.Size + 1}, nil
		}); err == nil {
			t.Fatal("a batch numbered past the end was written")
		}
		if st, _ := s.State(ctx); st.Size != 15 {
			t.Fatalf("size %d after refused batches", st.Size)
		}
	})
}

func seqs(from, to int64) []int64 {
	var out []int64
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

// Two writers (two handles, as two processes or two gateways) append
// concurrently: every batch lands whole, contiguous, in one order, and the
// Merkle log verifies.
func TestConformanceTwoWriters(t *testing.T) {
	conform(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		w1, w2 := b.open(t), b.open(t)
		const batches, per = 40, 7
		var wg sync.WaitGroup
		errs := make(chan error, 2)
		for i, s := range []*store.DB{w1, w2} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := 0; j < batches; j++ {
					if err := audit.Append(ctx, s, events(per, time.Now(), fmt.Sprintf("w%d-b%d", i, j))); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		st, _ := w1.State(ctx)
		if st.Size != 2*batches*per {
			t.Fatalf("size %d, want %d", st.Size, 2*batches*per)
		}
		rows, err := w2.Events(ctx, store.EventQuery{})
		if err != nil {
			t.Fatal(err)
		}
		// Each batch is one session: its rows are contiguous.
		for i := 0; i < len(rows); i += per {
			for j := i; j < i+per; j++ {
				if rows[j].Seq != int64(j+1) || rows[j].SessionID != rows[i].SessionID {
					t.Fatalf("row %d: seq %d session %q in a batch of %q", j, rows[j].Seq, rows[j].SessionID, rows[i].SessionID)
				}
			}
		}
		verify(t, w1)
	})
}

// A batch that fails (its builder fails, its context ended, it is
// misnumbered) writes nothing; a batch killed part way is
// TestConformanceCrashMidBatch.
func TestConformanceFailedBatchWritesNothing(t *testing.T) {
	conform(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		s := b.open(t)
		if err := audit.Append(ctx, s, events(3, time.Now(), "ok")); err != nil {
			t.Fatal(err)
		}
		boom := errors.New("boom")
		if err := s.AppendLog(ctx, func(store.LogState) ([]store.EventRow, store.LogState, error) {
			return nil, store.LogState{}, boom
		}); !errors.Is(err, boom) {
			t.Fatalf("builder error: %v", err)
		}
		// A batch whose context ended (its caller gave up) is not written.
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if err := audit.Append(cctx, s, events(400, time.Now(), "cancelled")); err == nil {
			t.Fatal("a cancelled batch committed")
		}
		st, _ := s.State(ctx)
		rows, _ := s.Events(ctx, store.EventQuery{})
		if st.Size != 3 || len(rows) != 3 {
			t.Fatalf("after failed batches: size %d, %d rows", st.Size, len(rows))
		}
		verify(t, s)
		if err := audit.Append(ctx, s, events(2, time.Now(), "after")); err != nil {
			t.Fatal(err)
		}
		verify(t, s)
	})
}

func TestConformanceMigrations(t *testing.T) {
	conform(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		s := b.open(t)
		m, err := s.MigrationStatus(ctx)
		if err != nil || m.Version != store.SchemaVersion() {
			t.Fatalf("fresh database: %+v %v", m, err)
		}
		// Opening again applies nothing.
		s2 := b.open(t)
		if m, err := s2.Migrate(ctx); err != nil || len(m.Applied) != 0 || m.Version != store.SchemaVersion() {
			t.Fatalf("second open: %+v %v", m, err)
		}
		// A schema a later release wrote is refused.
		if err := s.ExecForTest(ctx, `INSERT INTO schema_migrations(version, applied_ns) VALUES (?, 0)`, store.SchemaVersion()+1); err != nil {
			t.Fatal(err)
		}
		if _, berr := openStore(b.name, b.where); !errors.Is(berr, store.ErrSchemaNewer) {
			t.Fatalf("newer schema: %v", berr)
		}
	})
}

// A SQLite database created before schema versions takes version 1 and
// keeps its data.
func TestMigrationOfAnUnversionedDatabase(t *testing.T) {
	ctx := context.Background()
	b := sqliteBackend(t)
	s := b.open(t)
	if err := audit.Append(ctx, s, events(2, time.Now(), "old")); err != nil {
		t.Fatal(err)
	}
	if err := s.ExecForTest(ctx, `DROP TABLE schema_migrations`); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = b.open(t)
	m, err := s.MigrationStatus(ctx)
	if err != nil || m.Version != store.SchemaVersion() {
		t.Fatalf("%+v %v", m, err)
	}
	if st, _ := s.State(ctx); st.Size != 2 {
		t.Fatalf("size %d", st.Size)
	}
}

// The state other than the log: one-time tokens used once under
// contention, approvals decided once, grants, pins, revocations, memory
// IDs reserved without overlap, checkpoints kept first-come.
func TestConformanceState(t *testing.T) {
	conform(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		s, other := b.open(t), b.open(t)
		now := time.Now()

		// Join tokens and console links: once, before they expire, whoever races.
		if err := s.AddJoinToken(ctx, "join-1", "agent-a", now.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if err := s.AddConsoleLink(ctx, "link-1", "alice", now.Add(-time.Second)); err != nil {
			t.Fatal(err)
		}
		if _, err := s.UseConsoleLink(ctx, "link-1", now); !errors.Is(err, store.ErrConsoleLink) {
			t.Fatalf("expired link: %v", err)
		}
		var wins sync.Map
		concurrently(8, s, other, func(i int, db *store.DB) {
			if who, err := db.UseJoinToken(ctx, "join-1", now); err == nil {
				wins.Store(i, who)
			}
		})
		n := 0
		wins.Range(func(_, v any) bool { n++; return v == "agent-a" })
		if n != 1 {
			t.Fatalf("join token used %d times", n)
		}

		// Approvals: decided once, consumed once.
		req := &approval.Request{ID: "ap-1", Agent: "agent-a", Tool: "fs__write", ArgsSHA256: "x", Created: now, Expires: now.Add(time.Minute), State: approval.Pending, Arguments: json.RawMessage(`{"a":1}`)}
		if err := s.AddApproval(ctx, req); err != nil {
			t.Fatal(err)
		}
		errs := make(chan error, 2)
		for _, db := range []*store.DB{s, other} {
			go func() {
				errs <- db.DecideApproval(ctx, "ap-1", approval.Approved, "bob", "once", "", now)
			}()
		}
		e1, e2 := <-errs, <-errs
		if (e1 == nil) == (e2 == nil) {
			t.Fatalf("two deciders: %v, %v", e1, e2)
		}
		got, err := other.Approval(ctx, "ap-1")
		if err != nil || got.State != approval.Approved || got.DecidedBy != "bob" || string(got.Arguments) != `{"a":1}` {
			t.Fatalf("approval: %+v %v", got, err)
		}
		if err := other.ConsumeApproval(ctx, "ap-1"); err != nil {
			t.Fatal(err)
		}
		if err := s.ConsumeApproval(ctx, "ap-1"); err == nil {
			t.Fatal("an approval was used twice")
		}

		// Revocations: seen by another handle, idempotent, undone.
		if err := s.Revoke(ctx, store.RevokeAgent, "agent-a", "alice", "test"); err != nil {
			t.Fatal(err)
		}
		if err := s.Revoke(ctx, store.RevokeAgent, "agent-a", "alice", "test"); err != nil {
			t.Fatal(err)
		}
		revs, err := other.Revocations(ctx)
		if err != nil || !revs[store.RevokeAgent]["agent-a"] {
			t.Fatalf("revocations: %v %v", revs, err)
		}
		if ok, err := other.Unrevoke(ctx, store.RevokeAgent, "agent-a"); !ok || err != nil {
			t.Fatalf("unrevoke: %v %v", ok, err)
		}

		// Grants.
		g := grant.Grant{ID: "g-1", Agent: "agent-a", Tool: "fs__read", Reason: "r", GrantedBy: "alice", Created: now, Expires: now.Add(time.Hour)}
		if err := s.AddGrant(ctx, g); err != nil {
			t.Fatal(err)
		}
		if gs, err := other.Grants(ctx, now); err != nil || len(gs) != 1 || gs[0].Tool != "fs__read" {
			t.Fatalf("grants: %+v %v", gs, err)
		}
		if _, err := other.RevokeGrant(ctx, "g-1"); err != nil {
			t.Fatal(err)
		}
		if gs, _ := s.Grants(ctx, now); len(gs) != 0 {
			t.Fatalf("revoked grant active: %+v", gs)
		}

		// Pins: first sight kept, a state change seen elsewhere.
		p := toolreg.Pin{Upstream: "fs", Name: "read", Digest: "d1", Definition: json.RawMessage(`{"name":"read"}`), State: "pending", Reason: "new", SeenAt: now}
		before, _ := other.PinsChanged(ctx)
		for range 2 {
			if err := s.AddPin(ctx, p); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.SetPinState(ctx, "fs", "read", "d1", "approved", "alice"); err != nil {
			t.Fatal(err)
		}
		pins, err := other.Pins(ctx, "fs")
		if err != nil || len(pins) != 1 || pins[0].State != "approved" {
			t.Fatalf("pins: %+v %v", pins, err)
		}
		if after, _ := other.PinsChanged(ctx); after == before {
			t.Fatal("PinsChanged did not change")
		}

		// Memory IDs: concurrent reservations never overlap.
		type span struct{ first, n int64 }
		spans := make(chan span, 20)
		concurrently(20, s, other, func(i int, db *store.DB) {
			first, err := db.ReserveMemoryIDs(ctx, i+1)
			if err != nil {
				t.Error(err)
			}
			spans <- span{first, int64(i + 1)}
		})
		close(spans)
		used := map[int64]bool{}
		for sp := range spans {
			for id := sp.first; id < sp.first+sp.n; id++ {
				if used[id] || id < 1 {
					t.Fatalf("memory ID %d reserved twice (or invalid)", id)
				}
				used[id] = true
			}
		}
		el := store.MemoryElement{ID: 1000, Scope: "agent:a", Key: "k", Kind: "fact", Body: []byte("v"), State: "active", Agent: "a", Labels: []string{"x", "y"}, Untrusted: true, Created: now, SHA256: []byte{1, 2}}
		if err := s.AddMemory(ctx, []store.MemoryElement{el}); err != nil {
			t.Fatal(err)
		}
		ms, err := other.MemoryElements(ctx, store.MemoryQuery{ID: 1000})
		if err != nil || len(ms) != 1 || !ms[0].Untrusted || strings.Join(ms[0].Labels, ",") != "x,y" || string(ms[0].Body) != "v" {
			t.Fatalf("memory: %+v %v", ms, err)
		}

		// Checkpoints: the first note for a size stands.
		for _, n := range []string{"first", "second"} {
			if err := s.AddCheckpoint(ctx, store.Checkpoint{Size: 5, Time: now, Note: []byte(n)}); err != nil {
				t.Fatal(err)
			}
		}
		if c, ok, err := other.LatestCheckpoint(ctx); err != nil || !ok || string(c.Note) != "first" {
			t.Fatalf("checkpoint: %+v %v %v", c, ok, err)
		}

		// Secrets, policy bundles and pointers, export cursors, releases.
		if err := s.PutSecret(ctx, "api", []byte("sealed")); err != nil {
			t.Fatal(err)
		}
		if v, err := other.GetSecret(ctx, "api"); err != nil || string(v) != "sealed" {
			t.Fatalf("secret: %q %v", v, err)
		}
		if err := s.SaveBundle(ctx, "v1", []byte("bundle")); err != nil {
			t.Fatal(err)
		}
		if err := s.SetPolicyPointer(ctx, "active", "v1", "alice"); err != nil {
			t.Fatal(err)
		}
		if ptr, ok, err := other.PolicyPointer(ctx, "active"); err != nil || !ok || ptr.Version != "v1" {
			t.Fatalf("pointer: %+v %v %v", ptr, ok, err)
		}
		if err := s.SetCursor(ctx, "siem", 42); err != nil {
			t.Fatal(err)
		}
		if c, err := other.Cursor(ctx, "siem"); err != nil || c != 42 {
			t.Fatalf("cursor: %d %v", c, err)
		}
		if err := s.AddRelease(ctx, "sess", "agent-a", "alice"); err != nil {
			t.Fatal(err)
		}
		if id, err := other.LastRelease(ctx); err != nil || id < 1 {
			t.Fatalf("release: %d %v", id, err)
		}
		if ok, err := s.SaveBaselines(ctx, 0, []byte("b")); !ok || err != nil {
			t.Fatalf("baselines: %v %v", ok, err)
		}
		if gen, err := other.RestoreBaselines(ctx, []byte("r")); err != nil || gen != 1 {
			t.Fatalf("restore: %d %v", gen, err)
		}
		if ok, _ := s.SaveBaselines(ctx, 0, []byte("stale")); ok {
			t.Fatal("stale baselines saved over a restore")
		}
	})
}
