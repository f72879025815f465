// Package screen holds content screening: normalisation of what flows
// through the gateway, so that checks see text the way a model reads it.
package screen

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"html"
	"net/url"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// Normalisation steps, as recorded in Normalized.Steps.
const (
	StepANSI        = "ansi_escape"  // terminal escape sequences removed
	StepInvisible   = "invisible"    // zero-width, soft hyphen, variation selectors removed
	StepBidi        = "bidi_control" // bidirectional controls removed
	StepTags        = "unicode_tags" // Unicode tag characters (ASCII smuggling) decoded
	StepNFKC        = "nfkc"         // compatibility forms folded (fullwidth, ligatures, ...)
	StepHTMLComment = "html_comment" // comment markers removed (their text kept: the model reads it)
	StepHTMLEntity  = "html_entity"  // character references decoded
	StepURL         = "url_encoding" // percent-encoding decoded
	StepBase64      = "base64"       // a base64 run decoded to text (appended)
	StepHex         = "hex"          // a hex run decoded to text (appended)
)

// Bounds: decoded layers add at most twice the input's size, and
// layers nest at most maxDepth deep.
const (
	maxDepth      = 2
	minEncodedRun = 16 // shorter runs are identifiers, not payloads
)

// Normalized is text as a model would read it, and what it took to get it.
type Normalized struct {
	// Text is the normalised text, followed by any decoded layers (each on
	// a line of its own).
	Text string
	// Steps are the normalisation steps that changed something, in order
	// of first use, without repeats.
	Steps []string
}

func (n *Normalized) step(s string) {
	if !slices.Contains(n.Steps, s) {
		n.Steps = append(n.Steps, s)
	}
}

// Normalize returns s as a model would read it: without terminal escapes,
// invisible and bidirectional characters, with Unicode tag characters
// decoded, NFKC-folded, with HTML comment markers and character references
// and percent-encoding decoded, and with base64 and hex runs that decode to
// text appended as further lines.
func Normalize(s string) Normalized {
	var n Normalized
	budget := 2 * len(s)
	n.Text = n.layer(s, 0, &budget)
	return n
}

func (n *Normalized) layer(s string, depth int, budget *int) string {
	// ASCII without ESC has nothing to strip and is NFKC already (no
	// ASCII character decomposes or combines): most tool output.
	if !plainASCII(s) {
		s = n.stripControls(s)
		if !norm.NFKC.IsNormalString(s) {
			s = norm.NFKC.String(s)
			n.step(StepNFKC)
		}
	}
	if strings.Contains(s, "<!--") {
		s = strings.NewReplacer("<!--", " ", "-->", " ").Replace(s)
		n.step(StepHTMLComment)
	}
	if strings.IndexByte(s, '&') >= 0 {
		if u := html.UnescapeString(s); u != s {
			s = u
			n.step(StepHTMLEntity)
		}
	}
	if strings.IndexByte(s, '%') >= 0 {
		if u, err := url.QueryUnescape(strings.ReplaceAll(s, "+", "%2B")); err == nil && u != s && utf8.ValidString(u) {
			s = u
			n.step(StepURL)
		}
	}
	if depth >= maxDepth {
		return s
	}
	var layers []string
	for _, run := range encodedRuns(s) {
		text, kind := decodeRun(run)
		if text == "" || len(text) > *budget {
			continue
		}
		*budget -= len(text)
		n.step(kind)
		layers = append(layers, n.layer(text, depth+1, budget))
	}
	if len(layers) == 0 {
		return s
	}
	return s + "\n" + strings.Join(layers, "\n")
}

// stripControls removes ANSI escapes, invisible and bidi characters, and
// decodes tag characters, in one pass.
func (n *Normalized) stripControls(s string) string {
	if !hasControls(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == 0x1b:
			i += ansiLen(s[i:])
			n.step(StepANSI)
			continue
		case invisible(r):
			n.step(StepInvisible)
		case bidi(r):
			n.step(StepBidi)
		case tag(r):
			if r >= 0xE0020 && r <= 0xE007E {
				b.WriteByte(byte(r - 0xE0000))
			}
			n.step(StepTags)
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// plainASCII reports whether s is ASCII without ESC, eight bytes at a
// time.
func plainASCII(s string) bool {
	const (
		ones = 0x0101010101010101
		high = 0x8080808080808080
		esc  = 0x1b * ones
	)
	i := 0
	for ; i+8 <= len(s); i += 8 {
		x := binary.LittleEndian.Uint64([]byte(s[i : i+8]))
		// A byte of x at or past 0x80, or a zero byte of x^esc (an ESC):
		// the classic test for a zero byte, (y-ones) &^ y & high.
		y := x ^ esc
		if x&high != 0 || (y-ones)&^y&high != 0 {
			return false
		}
	}
	for ; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf || s[i] == 0x1b {
			return false
		}
	}
	return true
}

// hasControls reports whether s holds anything stripControls removes or
// decodes: ESC, or an invisible, bidi or tag character (all outside
// ASCII, so ASCII text is read byte by byte).
func hasControls(s string) bool {
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c == 0x1b {
				return true
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if invisible(r) || bidi(r) || tag(r) {
			return true
		}
		i += size
	}
	return false
}

func invisible(r rune) bool {
	return r == 0xAD || r == 0x34F || r == 0x61C || r == 0x115F || r == 0x1160 || r == 0x180E ||
		r >= 0x200B && r <= 0x200D || r >= 0x2060 && r <= 0x2064 || r == 0xFEFF ||
		r >= 0xFE00 && r <= 0xFE0F || r >= 0xE0100 && r <= 0xE01EF
}

func bidi(r rune) bool {
	return r == 0x200E || r == 0x200F || r >= 0x202A && r <= 0x202E || r >= 0x2066 && r <= 0x2069
}

func tag(r rune) bool { return r >= 0xE0000 && r <= 0xE007F }

// ansiLen is the length of the escape sequence at the start of s (CSI,
// OSC, or a two-byte escape).
func ansiLen(s string) int {
	if len(s) < 2 {
		return len(s)
	}
	switch s[1] {
	case '[': // CSI: parameters, then a final byte 0x40-0x7E
		for i := 2; i < len(s); i++ {
			if s[i] >= 0x40 && s[i] <= 0x7E {
				return i + 1
			}
		}
		return len(s)
	case ']': // OSC: until BEL or ESC \
		for i := 2; i < len(s); i++ {
			if s[i] == 0x07 {
				return i + 1
			}
			if s[i] == 0x1b && i+1 < len(s) && s[i+1] == '\\' {
				return i + 2
			}
		}
		return len(s)
	}
	if s[1] >= utf8.RuneSelf {
		return 1 // a lone ESC before a multi-byte character: keep the character
	}
	return 2
}

// encodedRuns returns the runs of s that may be base64 or hex payloads:
// those of minEncodedRun run bytes or more.
//
// A run that long starting anywhere from i to i+minEncodedRun-1 holds
// the byte at i+minEncodedRun-1, so that byte is read first: when it is
// not a run byte, no such run starts at or before it and the scan moves
// past it; when it is, its run is read out both ways. Words shorter than
// a run are read in part (the harness's prose, a quarter of its bytes).
func encodedRuns(s string) []string {
	var runs []string
	// i is 0 or follows a byte outside every run.
	for i := 0; i+minEncodedRun <= len(s); {
		p := i + minEncodedRun - 1
		if !b64Bytes[s[p]] {
			i = p + 1
			continue
		}
		start, end := p, p+1
		for start > i && b64Bytes[s[start-1]] {
			start--
		}
		for end < len(s) && b64Bytes[s[end]] {
			end++
		}
		if end-start >= minEncodedRun {
			runs = append(runs, s[start:end])
		}
		i = end + 1
	}
	return runs
}

// b64Bytes are the bytes of a base64 run, either alphabet, with padding
// (hex digits among them).
var b64Bytes = func() (t [256]bool) {
	for _, c := range []byte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_") {
		t[c] = true
	}
	return
}()

// decodeRun decodes run as hex or base64 if that yields readable text.
func decodeRun(run string) (string, string) {
	if len(run)%2 == 0 && strings.IndexFunc(run, func(r rune) bool { return !unicode.Is(unicode.ASCII_Hex_Digit, r) }) < 0 {
		if b, err := hex.DecodeString(run); err == nil && readable(b) {
			return string(b), StepHex
		}
		return "", ""
	}
	trimmed := strings.TrimRight(run, "=")
	for _, enc := range []*base64.Encoding{base64.RawStdEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(trimmed); err == nil && readable(b) {
			return string(b), StepBase64
		}
	}
	return "", ""
}

// readable reports whether b is UTF-8 text that is mostly letters, digits,
// punctuation and spaces (random bytes and binary formats are not).
func readable(b []byte) bool {
	if len(b) < 8 || !utf8.Valid(b) {
		return false
	}
	good, total := 0, 0
	for _, r := range string(b) {
		total++
		if unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsSpace(r) || unicode.IsPunct(r) || unicode.IsSymbol(r) {
			good++
		}
	}
	return good*100 >= total*95
}
