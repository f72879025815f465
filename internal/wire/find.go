package wire

import "bytes"

// byteFinder finds, left to right, the next occurrence of either of two
// bytes in b with bytes.IndexByte, which is vectorised, where
// bytes.IndexAny tests a set byte by byte (several times slower on long
// strings, the 4 KB texts of tool results). Each search starts past the
// last one's result, and the second byte is looked for only up to the
// next occurrence of the first, so one left-to-right scan reads each
// byte of b a bounded number of times however the two interleave.
type byteFinder struct {
	b      []byte
	x, y   byte
	nx, ny int // the next x and y at or after the last query (len(b): none); ny == nx: no y before nx
}

func newByteFinder(b []byte, x, y byte) byteFinder {
	return byteFinder{b: b, x: x, y: y, nx: -1, ny: -1}
}

// next returns the index of the first x or y at or after from, or len(b).
// from must not decrease between calls, nor exceed len(b).
func (f *byteFinder) next(from int) int {
	if f.nx < from {
		f.nx = len(f.b)
		if i := bytes.IndexByte(f.b[from:], f.x); i >= 0 {
			f.nx = from + i
		}
	}
	if f.ny < from {
		f.ny = f.nx
		if i := bytes.IndexByte(f.b[from:f.nx], f.y); i >= 0 {
			f.ny = from + i
		}
	}
	return min(f.nx, f.ny)
}
