package wire

import (
	"bytes"
	"strings"
	"testing"
)

// nextPlain is byteFinder.next by a byte loop.
func nextPlain(b []byte, from int, x, y byte) int {
	for k := from; k < len(b); k++ {
		if b[k] == x || b[k] == y {
			return k
		}
	}
	return len(b)
}

// skipStringPlain is skipString by a byte loop.
func skipStringPlain(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '"':
			return i + 1
		case '\\':
			i++
		}
	}
	return len(b)
}

// appendEventPlain is AppendEvent's data lines by IndexAny, as before the
// finder.
func appendEventPlain(dst []byte, data []byte) []byte {
	dst = append(dst, "event: message\n"...)
	for {
		i := bytes.IndexAny(data, "\r\n")
		if i < 0 {
			break
		}
		dst = append(append(append(dst, "data: "...), data[:i]...), '\n')
		if data[i] == '\r' && i+1 < len(data) && data[i+1] == '\n' {
			i++
		}
		data = data[i+1:]
	}
	return append(append(append(dst, "data: "...), data...), "\n\n"...)
}

func checkFinder(t *testing.T, b []byte, x, y byte, steps []byte) {
	t.Helper()
	f := newByteFinder(b, x, y)
	from := 0
	for k := 0; from <= len(b); k++ {
		if got, want := f.next(from), nextPlain(b, from, x, y); got != want {
			t.Fatalf("%q, %q/%q, from %d: %d, want %d", b, x, y, from, got, want)
		}
		step := 1
		if len(steps) > 0 {
			step = int(steps[k%len(steps)] % 5) // 0 repeats a query
		}
		from += step
		if k > 4*len(b)+8 {
			break
		}
	}
	for i := range b {
		if b[i] == '"' {
			if got, want := skipString(b, i), skipStringPlain(b, i); got != want {
				t.Fatalf("skipString(%q, %d) = %d, want %d", b, i, got, want)
			}
		}
	}
	if got, want := AppendEvent(nil, "", b), appendEventPlain(nil, b); !bytes.Equal(got, want) {
		t.Fatalf("AppendEvent(%q) = %q, want %q", b, got, want)
	}
}

// The finder, skipString and AppendEvent give what plain scans give.
func TestByteFinderMatchesThePlainScan(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"", `"`, `""`, `"\"`, `"\\"`, `"a\"b\\"c"`, `"\`, `\"\"\"`, "a\r\nb\rc\nd\n\r", "\r\r\r\n\n",
		`"` + strings.Repeat(`\n`, 300) + `"`, strings.Repeat("x\r", 100) + "\n", `{"k":"v","t":"` + strings.Repeat("word ", 900) + `"}`} {
		checkFinder(t, []byte(s), '"', '\\', nil)
		checkFinder(t, []byte(s), '\n', '\r', []byte{0, 1, 2, 3, 4})
	}
}

func FuzzByteFinder(f *testing.F) {
	f.Add([]byte(`"a\"b\\" "c"`), []byte{1, 0, 3})
	f.Add([]byte("a\r\n\rb\n"), []byte{2})
	f.Fuzz(func(t *testing.T, b, steps []byte) {
		checkFinder(t, b, '"', '\\', steps)
		checkFinder(t, b, '\n', '\r', steps)
	})
}

func BenchmarkSkipString4K(b *testing.B) {
	msg := Quote(strings.Repeat("The quick brown fox jumps over the lazy dog. ", 90))
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		if skipString(msg, 0) != len(msg) {
			b.Fatal("wrong end")
		}
	}
}

func BenchmarkAppendEvent4K(b *testing.B) {
	msg := []byte(`{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":` + string(Quote(strings.Repeat("The quick brown fox jumps over the lazy dog. ", 90))) + `}]}}`)
	buf := make([]byte, 0, 8192)
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		buf = AppendEvent(buf[:0], "", msg)
	}
}

// skipPlainBytes is skipPlain one byte at a time.
func skipPlainBytes(b []byte, i int) int {
	for i < len(b) && strPlain[b[i]] {
		i++
	}
	return i
}

// skipPlain finds what the byte loop finds: every byte value at every
// offset of an eight-byte word, after plain bytes of every kind, from
// starts across a word (FuzzSkipPlain tries any start up to the end).
func TestSkipPlainMatchesTheByteLoop(t *testing.T) {
	t.Parallel()
	var plain []byte
	for c := range 256 {
		if strPlain[c] {
			plain = append(plain, byte(c))
		}
	}
	b := make([]byte, 26)
	for v := range 256 {
		for p := range len(b) {
			for k := range b {
				b[k] = plain[(k*7+v+p)%len(plain)]
			}
			b[p] = byte(v)
			for start := range 10 {
				if got, want := skipPlain(b, start), skipPlainBytes(b, start); got != want {
					t.Fatalf("skipPlain(%q, %d) = %d, want %d", b, start, got, want)
				}
			}
		}
	}
}

func FuzzSkipPlain(f *testing.F) {
	f.Add([]byte(`abcdefgh"ijklmnop`), uint8(0))
	f.Add([]byte("abcdefg\x1fhij\\k\xc3\xa9"), uint8(3))
	f.Fuzz(func(t *testing.T, b []byte, start uint8) {
		i := min(int(start), len(b))
		if got, want := skipPlain(b, i), skipPlainBytes(b, i); got != want {
			t.Fatalf("skipPlain(%q, %d) = %d, want %d", b, i, got, want)
		}
	})
}
