package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"golang.org/x/mod/sumdb/note"

	"github.com/portcullis-dev/portcullis/internal/store"
)

// InclusionProof shows that one event is in the log as of a signed
// checkpoint. It is self-contained: VerifyInclusionProof needs only it and
// the log's public key.
type InclusionProof struct {
	Seq        int64    `json:"seq"`
	Event      []byte   `json:"event"`      // the event's stored body (canonical JSON)
	Size       int64    `json:"tree_size"`  // the checkpoint's size
	Hashes     [][]byte `json:"proof"`      // RFC 6962 inclusion proof, leaf to root
	Checkpoint string   `json:"checkpoint"` // the signed checkpoint note
}

// ProveStore is what Prove reads.
type ProveStore interface {
	ScanEvents(ctx context.Context, fn func(store.EventRow) error) error
	Checkpoints(ctx context.Context) ([]store.Checkpoint, error)
}

// ErrNotCovered is returned by Prove when no checkpoint covers the event yet.
var ErrNotCovered = errors.New("no checkpoint covers the event yet")

// Prove builds an inclusion proof for event seq against the smallest stored
// checkpoint that covers it (or the one of size atSize, if non-zero).
func Prove(ctx context.Context, s ProveStore, seq, atSize int64) (*InclusionProof, error) {
	cps, err := s.Checkpoints(ctx)
	if err != nil {
		return nil, err
	}
	var cp *store.Checkpoint
	for i := range cps {
		if cps[i].Size >= seq && (atSize == 0 || cps[i].Size == atSize) {
			cp = &cps[i]
			break
		}
	}
	if cp == nil || seq < 1 {
		return nil, ErrNotCovered
	}
	leaves := make([][]byte, 0, cp.Size)
	var body []byte
	err = s.ScanEvents(ctx, func(r store.EventRow) error {
		if int64(len(leaves)) == cp.Size {
			return errStop
		}
		leaves = append(leaves, r.LeafHash)
		if r.Seq == seq {
			body = r.Body
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return nil, err
	}
	if body == nil {
		return nil, fmt.Errorf("prove event %d: its body was pruned or is missing", seq)
	}
	if int64(len(leaves)) != cp.Size {
		return nil, fmt.Errorf("prove event %d: log holds %d events, checkpoint %d", seq, len(leaves), cp.Size)
	}
	nodes, err := proof.Inclusion(uint64(seq-1), uint64(cp.Size))
	if err != nil {
		return nil, err
	}
	hashes := make([][]byte, len(nodes.IDs))
	for i, id := range nodes.IDs {
		if hashes[i], err = subtreeRoot(leaves, id); err != nil {
			return nil, err
		}
	}
	if hashes, err = nodes.Rehash(hashes, hasher.HashChildren); err != nil {
		return nil, err
	}
	return &InclusionProof{Seq: seq, Event: body, Size: cp.Size, Hashes: hashes, Checkpoint: string(cp.Note)}, nil
}

var errStop = errors.New("stop")

// subtreeRoot is the hash of the perfect subtree id over leaves. (Proof
// nodes are perfect subtrees; Rehash combines those of the ephemeral node.)
func subtreeRoot(leaves [][]byte, id compact.NodeID) ([]byte, error) {
	begin, end := id.Coverage()
	if end > uint64(len(leaves)) {
		return nil, fmt.Errorf("proof node %v beyond the tree", id)
	}
	r := rangeFactory.NewEmptyRange(begin)
	for _, l := range leaves[begin:end] {
		if err := r.Append(l, nil); err != nil {
			return nil, err
		}
	}
	if h := r.Hashes(); len(h) == 1 {
		return h[0], nil
	}
	return nil, fmt.Errorf("proof node %v is not a perfect subtree", id)
}

// VerifyInclusionProof checks p with the log's public key (a note verifier
// key) and returns the checkpoint it is anchored in.
func VerifyInclusionProof(p *InclusionProof, vkey string) (Head, error) {
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return Head{}, fmt.Errorf("verify proof: key: %w", err)
	}
	h, err := OpenCheckpoint([]byte(p.Checkpoint), v)
	if err != nil {
		return Head{}, fmt.Errorf("verify proof: %w", err)
	}
	if h.Size != p.Size || p.Seq < 1 || p.Seq > p.Size {
		return Head{}, errors.New("verify proof: sizes do not match the checkpoint")
	}
	var hdr struct {
		Seq int64 `json:"seq"`
	}
	if err := json.Unmarshal(p.Event, &hdr); err != nil || hdr.Seq != p.Seq {
		return Head{}, errors.New("verify proof: the event is not the one numbered in the proof")
	}
	leaf := hasher.HashLeaf(p.Event)
	if err := proof.VerifyInclusion(hasher, uint64(p.Seq-1), uint64(p.Size), leaf, p.Hashes, h.Root); err != nil {
		return Head{}, fmt.Errorf("verify proof: %w", err)
	}
	return h, nil
}
