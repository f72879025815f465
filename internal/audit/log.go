package audit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"sync"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/portcullis-dev/portcullis/internal/store"
)

// hasher is RFC 6962 over SHA-256: leaf = H(0x00 || data), node =
// H(0x01 || left || right).
var hasher = rfc6962.DefaultHasher

var rangeFactory = compact.RangeFactory{Hash: hasher.HashChildren}

// LogStore is the storage the log appends to.
type LogStore interface {
	AppendLog(ctx context.Context, build func(store.LogState) ([]store.EventRow, store.LogState, error)) error
}

// Append numbers events after the current end of the log, encodes each
// (with its sequence number inside, so that moving an event changes its
// leaf), computes the leaf hashes and the new tree, and writes all of it in
// one transaction. On error nothing was written and the events' Seq is
// unspecified.
func Append(ctx context.Context, s LogStore, events []*Event) error {
	if r, ok := ownerOf(s); ok {
		// This process's recorder owns the store's journal: the table has
		// one writer.
		for _, e := range events {
			if err := r.Record(ctx, e); err != nil {
				return err
			}
		}
		return nil
	}
	return s.AppendLog(ctx, func(st store.LogState) ([]store.EventRow, store.LogState, error) {
		return buildRows(st, events)
	})
}

// encodeBuffers hold events being encoded (each body is then copied out at
// its size).
var encodeBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

// buildRows numbers events after the end of the log at st, encodes them and
// returns their rows and the log's next state.
func buildRows(st store.LogState, events []*Event) ([]store.EventRow, store.LogState, error) {
	r, err := decodeRange(st)
	if err != nil {
		return nil, store.LogState{}, err
	}
	rows := make([]store.EventRow, len(events))
	sp := encodeBuffers.Get().(*[]byte)
	defer func() {
		if cap(*sp) <= 64<<10 { // an outsized event's buffer is not kept
			encodeBuffers.Put(sp)
		}
	}()
	for i, e := range events {
		e.Seq = st.Size + int64(i) + 1
		*sp, err = e.appendJSON((*sp)[:0])
		if err != nil {
			return nil, store.LogState{}, fmt.Errorf("encode event: %w", err)
		}
		body := bytes.Clone(*sp)
		leaf := hasher.HashLeaf(body)
		if err := r.Append(leaf, nil); err != nil {
			return nil, store.LogState{}, err
		}
		rows[i] = store.EventRow{
			Seq: e.Seq, Time: e.Time, Type: string(e.Type), RequestID: e.RequestID, TraceID: e.TraceID,
			Agent: e.Agent, SessionID: e.SessionID, LeafHash: leaf, Body: body,
		}
	}
	return rows, store.LogState{Size: int64(r.End()), Range: encodeRange(r)}, nil
}

// Root returns the tree head of a log state.
func Root(st store.LogState) ([]byte, error) {
	r, err := decodeRange(st)
	if err != nil {
		return nil, err
	}
	if st.Size == 0 {
		return hasher.EmptyRoot(), nil
	}
	return r.GetRootHash(nil)
}

func encodeRange(r *compact.Range) []byte {
	hashes := r.Hashes()
	b := make([]byte, 0, len(hashes)*sha256.Size)
	for _, h := range hashes {
		b = append(b, h...)
	}
	return b
}

func decodeRange(st store.LogState) (*compact.Range, error) {
	if len(st.Range)%sha256.Size != 0 {
		return nil, fmt.Errorf("log state: range of %d bytes", len(st.Range))
	}
	hashes := make([][]byte, 0, len(st.Range)/sha256.Size)
	for i := 0; i < len(st.Range); i += sha256.Size {
		hashes = append(hashes, st.Range[i:i+sha256.Size])
	}
	r, err := rangeFactory.NewRange(0, uint64(st.Size), hashes)
	if err != nil {
		return nil, fmt.Errorf("log state: %w", err)
	}
	return r, nil
}
