package audit

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/portcullis-dev/portcullis/internal/store"
)

const testOrigin = "portcullis.test/audit"

// logFixture is a log of n events with checkpoints every 10 events, written
// through the real code path, plus raw SQL access for tampering.
type logFixture struct {
	t      *testing.T
	path   string
	st     *store.DB
	db     *sql.DB
	vkey   string
	copies string
}

func newLog(t *testing.T, n int) *logFixture {
	t.Helper()
	dir := t.TempDir()
	f := &logFixture{t: t, path: filepath.Join(dir, "log.db"), copies: filepath.Join(dir, "copies")}
	var err error
	if f.st, err = store.Open(f.path); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.st.Close() })
	signer, vkey, err := LoadOrCreateLogKey(filepath.Join(dir, "keys"), testOrigin)
	if err != nil {
		t.Fatal(err)
	}
	f.vkey = vkey
	cp := &Checkpointer{Store: f.st, Signer: signer, Origin: testOrigin, Copies: []string{f.copies}, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ctx := context.Background()
	for i := 1; i <= n; i++ {
		e := Decision(TypeDecision, time.Unix(int64(1_800_000_000+i), 0), Subject{}, "")
		e.Agent, e.Target, e.Outcome = "agent", fmt.Sprintf("tool-%d", i), OutcomeAllow
		if err := Append(ctx, f.st, []*Event{e}); err != nil {
			t.Fatal(err)
		}
		if i%10 == 0 {
			if _, err := cp.Checkpoint(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	if f.db, err = sql.Open("sqlite", "file:"+f.path); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.db.Close() })
	return f
}

func (f *logFixture) exec(q string, args ...any) {
	f.t.Helper()
	if _, err := f.db.Exec(q, args...); err != nil {
		f.t.Fatalf("%s: %v", q, err)
	}
}

func (f *logFixture) verify(extraDirs ...string) *Report {
	f.t.Helper()
	v, err := note.NewVerifier(f.vkey)
	if err != nil {
		f.t.Fatal(err)
	}
	var extra [][]byte
	for _, d := range extraDirs {
		b, err := ReadCopies(d)
		if err != nil {
			f.t.Fatal(err)
		}
		extra = append(extra, b...)
	}
	rep, err := Verify(context.Background(), f.st, v, extra)
	if err != nil {
		f.t.Fatal(err)
	}
	return rep
}

// rewriteLeaf recomputes the stored leaf hash of seq from its (tampered) body.
func (f *logFixture) rewriteLeaf(seq int) {
	var body []byte
	f.db.QueryRow(`SELECT body FROM events WHERE seq = ?`, seq).Scan(&body)
	f.exec(`UPDATE events SET leaf_hash = ? WHERE seq = ?`, hasher.HashLeaf(body), seq)
}

func TestVerifyIntactLog(t *testing.T) {
	t.Parallel()
	f := newLog(t, 35)
	rep := f.verify(f.copies)
	if !rep.OK() || rep.Events != 35 || rep.Checkpoints != 3 || rep.Anchored != 30 {
		t.Fatalf("intact log: %+v", rep)
	}
}

func TestVerifyCatchesTampering(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		tamper   func(f *logFixture)
		firstBad int64
		want     string
	}{
		{"altered body", func(f *logFixture) {
			f.exec(`UPDATE events SET body = replace(body, '"outcome":"allow"', '"outcome":"deny"') WHERE seq = 17`)
		}, 17, "event 17 was altered"},
		{"altered body with its leaf hash recomputed", func(f *logFixture) {
			f.exec(`UPDATE events SET body = replace(body, 'tool-17', 'tool-99') WHERE seq = 17`)
			f.rewriteLeaf(17)
		}, 11, "checkpoint at size 20 does not match"},
		{"removed event", func(f *logFixture) { f.exec(`DELETE FROM events WHERE seq = 23`) }, 23, "event 23 is missing"},
		// The index columns are not hashed: an event re-indexed under
		// another agent or request would vanish from queries.
		{"agent column altered", func(f *logFixture) {
			f.exec(`UPDATE events SET agent = 'someone-else' WHERE seq = 14`)
		}, 14, "event 14's index columns (agent) differ from its body"},
		{"request and agent columns altered", func(f *logFixture) {
			f.exec(`UPDATE events SET request_id = 'REQ-X', agent = '' WHERE seq = 15`)
		}, 15, "event 15's index columns (request_id, agent) differ"},
		{"one byte of the type column", func(f *logFixture) {
			f.exec(`UPDATE events SET type = 'decisioN' WHERE seq = 16`)
		}, 16, "event 16's index columns (type) differ"},
		{"time column moved", func(f *logFixture) {
			f.exec(`UPDATE events SET time_ns = time_ns + 1 WHERE seq = 18`)
		}, 18, "event 18's index columns (time) differ"},
		{"removed from the end", func(f *logFixture) {
			f.exec(`DELETE FROM events WHERE seq > 25`)
			f.exec(`UPDATE log_state SET size = 25`)
		}, 26, "removed from the end"},
		{"reordered", func(f *logFixture) {
			f.exec(`UPDATE events SET body = (SELECT body FROM events WHERE seq = 13), leaf_hash = (SELECT leaf_hash FROM events WHERE seq = 13) WHERE seq = 12`)
		}, 12, "holds the body of event 13"},
		{"inserted and renumbered", func(f *logFixture) {
			// Shift events 31..35 up by one and put a forged event at 31,
			// with consistent leaf hashes; only the body's own number and the
			// checkpoint catch it.
			f.exec(`UPDATE events SET seq = seq + 100 WHERE seq >= 31`)
			f.exec(`UPDATE events SET seq = seq - 99 WHERE seq >= 131`)
			at := time.Unix(1_800_000_031, 0).UTC()
			forged, _ := json.Marshal(&Event{Seq: 31, Time: at, Type: TypeDecision, Outcome: OutcomeAllow, Subject: Subject{Agent: "agent"}, Target: "forged"})
			f.exec(`INSERT INTO events(seq, time_ns, type, agent, leaf_hash, body) VALUES (31, ?, 'decision', 'agent', ?, ?)`, at.UnixNano(), hasher.HashLeaf(forged), forged)
		}, 32, "holds the body of event 31"},
		{"whole log rewritten consistently", func(f *logFixture) {
			f.exec(`UPDATE events SET body = replace(body, '"outcome":"allow"', '"outcome":"deny"') WHERE seq = 5`)
			f.rewriteLeaf(5)
		}, 1, "checkpoint at size 10 does not match"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newLog(t, 35)
			tc.tamper(f)
			rep := f.verify(f.copies)
			if rep.OK() || rep.FirstBad != tc.firstBad || !strings.Contains(strings.Join(rep.Problems, "\n"), tc.want) {
				t.Errorf("first bad %d, problems:\n%s\nwant first bad %d and %q", rep.FirstBad, strings.Join(rep.Problems, "\n"), tc.firstBad, tc.want)
			}
		})
	}
}

func TestVerifyCatchesForgedAndDeletedCheckpoints(t *testing.T) {
	t.Parallel()
	f := newLog(t, 20)
	// An attacker rewrites event 15, recomputes everything and signs new
	// checkpoints with a key of their own.
	f.exec(`UPDATE events SET body = replace(body, 'tool-15', 'tool-00') WHERE seq = 15`)
	f.rewriteLeaf(15)
	f.exec(`DELETE FROM checkpoints`)
	signer, _, err := LoadOrCreateLogKey(filepath.Join(t.TempDir(), "k"), testOrigin)
	if err != nil {
		t.Fatal(err)
	}
	cp := &Checkpointer{Store: f.st, Signer: signer, Origin: testOrigin, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if _, err := cp.Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	rep := f.verify() // store only: the forged checkpoint fails the real key
	if rep.OK() || !strings.Contains(strings.Join(rep.Problems, "\n"), "signature does not verify") {
		t.Errorf("forged checkpoint accepted: %+v", rep)
	}
	rep = f.verify(f.copies) // the external copies still hold the true heads
	if rep.OK() || rep.FirstBad != 11 {
		t.Errorf("with external copies: first bad %d, %v", rep.FirstBad, rep.Problems)
	}
}

func TestPrunedLogStillVerifies(t *testing.T) {
	t.Parallel()
	f := newLog(t, 30)
	n, err := f.st.PruneBodies(context.Background(), time.Unix(1_800_000_000+16, 0))
	if err != nil || n != 15 {
		t.Fatalf("pruned %d, %v", n, err)
	}
	rep := f.verify()
	if !rep.OK() || rep.Pruned != 15 {
		t.Fatalf("pruned log: %+v", rep)
	}
	f.exec(`UPDATE events SET leaf_hash = zeroblob(32) WHERE seq = 3`)
	if rep := f.verify(); rep.OK() {
		t.Error("tampered leaf hash of a pruned event not caught")
	}
}

func TestInclusionProof(t *testing.T) {
	t.Parallel()
	f := newLog(t, 37)
	for _, seq := range []int64{1, 2, 7, 10, 19, 30} {
		p, err := Prove(context.Background(), f.st, seq, 0)
		if err != nil {
			t.Fatalf("prove %d: %v", seq, err)
		}
		b, _ := json.Marshal(p)
		var back InclusionProof
		json.Unmarshal(b, &back)
		if _, err := VerifyInclusionProof(&back, f.vkey); err != nil {
			t.Errorf("proof of %d (size %d): %v", seq, p.Size, err)
		}
		back.Event = []byte(strings.Replace(string(back.Event), "tool", "fool", 1))
		if _, err := VerifyInclusionProof(&back, f.vkey); err == nil {
			t.Errorf("altered event %d verified", seq)
		}
	}
	if _, err := Prove(context.Background(), f.st, 35, 0); err != ErrNotCovered {
		t.Errorf("event after the last checkpoint: %v", err)
	}
}
