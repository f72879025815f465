package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkLogWriterAppend fills the events table as the audit indexer
// does (transactions of 500 events of 700 bytes, on a table already
// holding 100,000), with request and trace IDs that are random or
// time-ordered (how the gateway makes them): a random key lands on a
// random page of its index. Reports µs per event.
func BenchmarkLogWriterAppend(b *testing.B) {
	for _, ordered := range []bool{false, true} {
		name := "random_ids"
		if ordered {
			name = "time_ordered_ids"
		}
		b.Run(name, func(b *testing.B) { benchLogWriter(b, ordered) })
	}
}

func benchLogWriter(b *testing.B, ordered bool) {
	db, err := Open(filepath.Join(b.TempDir(), "p.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	w, err := db.LogWriter(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	body := make([]byte, 700)
	for i := range body {
		body[i] = 'a' + byte(i%26)
	}
	var st LogState
	id := func(n int64, size int) string {
		r := make([]byte, size)
		rand.Read(r)
		if ordered {
			return fmt.Sprintf("%012x", n) + hex.EncodeToString(r[6:])
		}
		return hex.EncodeToString(r)
	}
	batch := func(k int) {
		rows := make([]EventRow, k)
		for i := range rows {
			n := st.Size + int64(i) + 1
			rows[i] = EventRow{Seq: n, Time: time.Unix(0, n), Type: "decision", RequestID: id(n, 15), TraceID: id(n, 16),
				Agent: "bench", SessionID: fmt.Sprintf("session-%d", n%8), LeafHash: body[:32], Body: body}
		}
		next := LogState{Size: st.Size + int64(k), Range: []byte{1}}
		if err := w.Append(ctx, st, rows, next); err != nil {
			b.Fatal(err)
		}
		st = next
	}
	for range 200 {
		batch(500)
	}
	b.ResetTimer()
	for range b.N {
		batch(500)
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*500), "µs/event")
}
