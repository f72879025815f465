package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/portcullis-dev/portcullis/internal/store"
)

// VerifyStore is what Verify reads: a copy of the data is enough.
type VerifyStore interface {
	ScanEvents(ctx context.Context, fn func(store.EventRow) error) error
	Checkpoints(ctx context.Context) ([]store.Checkpoint, error)
	State(ctx context.Context) (store.LogState, error)
}

// Report is the outcome of Verify. The log is intact if Problems is empty.
type Report struct {
	Events      int64
	Pruned      int64
	Checkpoints int   // valid, distinct checkpoints checked
	Anchored    int64 // events covered by the largest matching checkpoint
	// FirstBad is the sequence number of the first event found altered,
	// removed, inserted or reordered (0 if none). When the tampering left
	// every stored hash consistent, only signed checkpoints disagree, and
	// FirstBad is the first event after the last checkpoint that matched.
	FirstBad int64
	Problems []string

	exact, bounded int64 // first exactly located, first bounded by checkpoints
}

// OK reports whether no problem was found.
func (r *Report) OK() bool { return len(r.Problems) == 0 }

// problem records an exactly located problem at seq (0: not an event).
func (r *Report) problem(seq int64, format string, a ...any) {
	if seq > 0 && (r.exact == 0 || seq < r.exact) {
		r.exact = seq
	}
	r.Problems = append(r.Problems, fmt.Sprintf(format, a...))
}

// bound records a problem known only to lie at or after seq.
func (r *Report) bound(seq int64, format string, a ...any) {
	if r.bounded == 0 || seq < r.bounded {
		r.bounded = seq
	}
	r.Problems = append(r.Problems, fmt.Sprintf(format, a...))
}

// finish names the first bad event: the exact finding if there is one (it
// lies within any checkpoint range that failed), else the range's start.
func (r *Report) finish() {
	r.FirstBad = r.exact
	if r.FirstBad == 0 {
		r.FirstBad = r.bounded
	}
}

// Verify recomputes the log's Merkle tree from the stored events and checks
// it against every checkpoint (from the store and the extra copies) signed by
// v. It works offline on a copy of the data directory.
func Verify(ctx context.Context, s VerifyStore, v note.Verifier, extra [][]byte) (*Report, error) {
	rep := &Report{}
	heads, err := collectHeads(ctx, s, v, extra, rep)
	if err != nil {
		return nil, err
	}
	sizes := make([]int64, 0, len(heads))
	for size := range heads {
		sizes = append(sizes, size)
	}
	sort.Slice(sizes, func(i, j int) bool { return sizes[i] < sizes[j] })

	r := rangeFactory.NewEmptyRange(0)
	next, lastGood := 0, int64(0)
	checkHead := func(size int64) error {
		root := hasher.EmptyRoot()
		if size > 0 {
			var err error
			if root, err = r.GetRootHash(nil); err != nil {
				return err
			}
		}
		if bytes.Equal(root, heads[size]) {
			lastGood = size
			return nil
		}
		rep.bound(lastGood+1, "checkpoint at size %d does not match the log: an event after %d and at most %d was altered, removed, inserted or reordered", size, lastGood, size)
		return nil
	}
	for next < len(sizes) && sizes[next] == 0 {
		checkHead(0)
		next++
	}
	structural := false
	err = s.ScanEvents(ctx, func(row store.EventRow) error {
		want := int64(r.End()) + 1
		if row.Seq != want && !structural {
			structural = true
			if row.Seq > want {
				rep.problem(want, "event %d is missing (the next stored event is %d)", want, row.Seq)
			} else {
				rep.problem(row.Seq, "event %d appears twice or out of order", row.Seq)
			}
		}
		rep.Events++
		leaf := row.LeafHash
		if row.Body == nil {
			rep.Pruned++
		} else {
			leaf = hasher.HashLeaf(row.Body)
			if !bytes.Equal(leaf, row.LeafHash) {
				rep.problem(row.Seq, "event %d was altered: its body does not match its recorded leaf hash", row.Seq)
			}
			var hdr indexed
			if err := json.Unmarshal(row.Body, &hdr); err != nil || hdr.Seq != row.Seq {
				rep.problem(row.Seq, "event %d holds the body of event %d: inserted or reordered", row.Seq, hdr.Seq)
			} else if cols := hdr.differences(row); len(cols) > 0 {
				rep.problem(row.Seq, "event %d's index columns (%s) differ from its body: altered, so queries by them miss or misname the event", row.Seq, strings.Join(cols, ", "))
			}
		}
		if len(leaf) != 32 {
			rep.problem(row.Seq, "event %d has no valid leaf hash", row.Seq)
			leaf = make([]byte, 32)
		}
		if err := r.Append(leaf, nil); err != nil {
			return err
		}
		for next < len(sizes) && sizes[next] == int64(r.End()) {
			if err := checkHead(sizes[next]); err != nil {
				return err
			}
			next++
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	for ; next < len(sizes); next++ {
		rep.bound(int64(r.End())+1, "checkpoint at size %d, but the log holds only %d events: events were removed from the end", sizes[next], r.End())
	}
	rep.Anchored = lastGood
	if err := checkState(ctx, s, r.End(), rep); err != nil {
		return nil, err
	}
	rep.finish()
	return rep, nil
}

// collectHeads verifies every checkpoint note and returns root by size.
// Two valid checkpoints with the same size and different roots are a fork.
func collectHeads(ctx context.Context, s VerifyStore, v note.Verifier, extra [][]byte, rep *Report) (map[int64][]byte, error) {
	stored, err := s.Checkpoints(ctx)
	if err != nil {
		return nil, err
	}
	notes := make([][]byte, 0, len(stored)+len(extra))
	for _, c := range stored {
		notes = append(notes, c.Note)
	}
	notes = append(notes, extra...)
	heads := map[int64][]byte{}
	for i, msg := range notes {
		h, err := OpenCheckpoint(msg, v)
		if err != nil {
			var unverified *note.UnverifiedNoteError
			var invalid *note.InvalidSignatureError
			if errors.As(err, &unverified) || errors.As(err, &invalid) {
				rep.problem(0, "checkpoint %d: signature does not verify with the given key (forged or re-signed)", i+1)
			} else {
				rep.problem(0, "checkpoint %d: %v", i+1, err)
			}
			continue
		}
		if prev, ok := heads[h.Size]; ok && !bytes.Equal(prev, h.Root) {
			rep.problem(0, "two validly signed checkpoints for size %d disagree: the log was forked or rewritten", h.Size)
			continue
		}
		heads[h.Size] = h.Root
	}
	rep.Checkpoints = len(heads)
	return heads, nil
}

func checkState(ctx context.Context, s VerifyStore, size uint64, rep *Report) error {
	st, err := s.State(ctx)
	if err != nil {
		return err
	}
	if st.Size != int64(size) {
		rep.problem(0, "log state records %d events, the log holds %d", st.Size, size)
	}
	return nil
}

// indexed is what of an event's body the store also keeps in index
// columns, for queries (by request, trace, agent, session, type, time).
// Only the body is hashed into the log, so verification checks that the
// columns say what the body says.
type indexed struct {
	Seq       int64     `json:"seq"`
	Time      time.Time `json:"time"`
	Type      string    `json:"type"`
	RequestID string    `json:"request_id"`
	TraceID   string    `json:"trace_id"`
	Agent     string    `json:"agent"`
	SessionID string    `json:"session_id"`
}

// differences names the columns of row that disagree with the body.
func (h *indexed) differences(row store.EventRow) []string {
	var out []string
	for _, c := range []struct {
		name        string
		col, inBody string
	}{
		{"type", row.Type, h.Type}, {"request_id", row.RequestID, h.RequestID}, {"trace_id", row.TraceID, h.TraceID},
		{"agent", row.Agent, h.Agent}, {"session_id", row.SessionID, h.SessionID},
	} {
		if c.col != c.inBody {
			out = append(out, c.name)
		}
	}
	if !row.Time.Equal(h.Time) {
		out = append(out, "time")
	}
	return out
}
