package store

import (
	"testing"
	"time"
)

// BenchmarkJournalAppend: one frame of one 1 KB event written (no sync),
// the recorder's commit.
func BenchmarkJournalAppend(b *testing.B) { benchJournal(b, false) }

// BenchmarkJournalAppendSync: one frame written and fdatasynced, a lone
// caller's durable commit.
func BenchmarkJournalAppendSync(b *testing.B) { benchJournal(b, true) }

func benchJournal(b *testing.B, sync bool) {
	j, err := OpenJournal(b.TempDir(), time.Second)
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	if err := j.Recover(func(func(func(JournalFrame) error) error) error { return nil }, nil); err != nil {
		b.Fatal(err)
	}
	row := journalRows(1, 1)[0]
	row.Body = make([]byte, 1024)
	next := stateAt(1)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		row.Seq = int64(i + 1)
		next.Size = row.Seq
		if err := j.Append(func([]JournalFrame) ([]EventRow, LogState, error) { return []EventRow{row}, next, nil }); err != nil {
			b.Fatal(err)
		}
		if sync {
			if err := j.Sync(); err != nil {
				b.Fatal(err)
			}
		}
	}
}
