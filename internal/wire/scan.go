package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"unicode"
	"unicode/utf8"
)

// Errors from Parse and Valid, wrapped in a *SyntaxError that says where.
var (
	ErrSyntax    = errors.New("malformed JSON")
	ErrDepth     = errors.New("JSON nested too deeply")
	ErrDuplicate = errors.New("duplicate object key")
	// ErrKeyCase is a key of the envelope, params, result or _meta that
	// differs from one the gateway reads only in letter case.
	ErrKeyCase  = errors.New("key differs from a known key only in letter case")
	ErrEncoding = errors.New("invalid UTF-8 or unpaired surrogate")
)

// SyntaxError is a refusal of malformed input, with the byte offset where
// it was noticed. It never quotes the input.
type SyntaxError struct {
	Offset int
	Msg    string
	Err    error // one of the Err values above
}

func (e *SyntaxError) Error() string { return fmt.Sprintf("%v at byte %d: %s", e.Err, e.Offset, e.Msg) }
func (e *SyntaxError) Unwrap() error { return e.Err }

// Span is the bounds of one JSON value (or key) within a message's bytes.
type Span struct{ Start, End int }

// Empty reports whether the span covers nothing (an absent value).
func (s Span) Empty() bool { return s.End <= s.Start }

// In returns the bytes of s within b.
func (s Span) In(b []byte) []byte { return b[s.Start:s.End] }

// Valid reports whether b is one JSON value that Parse's rules accept
// (strict JSON, UTF-8, no duplicate keys, nesting at most maxDepth).
func Valid(b []byte, maxDepth int) error {
	s := scanner{b: b, maxDepth: maxDepth}
	if _, err := s.document(nil); err != nil {
		return err
	}
	return s.foldDupErr()
}

// foldDupErr refuses the key foldDup records.
func (s *scanner) foldDupErr() error {
	if s.foldDup == 0 {
		return nil
	}
	return &SyntaxError{Offset: s.foldDup - 1, Msg: "a key repeats (letter case aside)", Err: ErrDuplicate}
}

// objRole names the objects whose members a scan records for the view.
type objRole uint8

const (
	roleNone objRole = iota
	roleTop
	roleParams
	roleMeta
	roleResult
)

type member struct {
	role objRole
	key  string // a known key (see knownKey), or "" for others
	val  Span
}

// scanner validates one JSON document by recursive descent.
type scanner struct {
	b        []byte
	i        int
	maxDepth int
	depth    int
	keys     [][]byte // keys of the open objects, innermost last
	record   *[]member
	// foldDup is 1 + the offset of the first key equal to another of its
	// object's but for letter case, in an object no role records (0:
	// none). Whether it is refused depends on who reads the message: see
	// Parse.
	foldDup int
}

func (s *scanner) fail(err error, msg string) error {
	return &SyntaxError{Offset: s.i, Msg: msg, Err: err}
}

// document validates b as exactly one value surrounded by whitespace and
// returns its span. Members of the roles' objects are appended to record.
func (s *scanner) document(record *[]member) (Span, error) {
	if s.maxDepth <= 0 {
		s.maxDepth = DefaultMaxDepth
	}
	s.record = record
	s.ws()
	start := s.i
	if err := s.value(roleTop); err != nil {
		return Span{}, err
	}
	sp := Span{start, s.i}
	s.ws()
	if s.i != len(s.b) {
		return Span{}, s.fail(ErrSyntax, "data after the value")
	}
	return sp, nil
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *scanner) value(role objRole) error {
	if s.i >= len(s.b) {
		return s.fail(ErrSyntax, "unexpected end")
	}
	switch c := s.b[s.i]; {
	case c == '{':
		return s.object(role)
	case c == '[':
		return s.array()
	case c == '"':
		_, err := s.str()
		return err
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	case c == '-' || c >= '0' && c <= '9':
		return s.number()
	}
	return s.fail(ErrSyntax, "unexpected character")
}

func (s *scanner) literal(lit string) error {
	if !bytes.HasPrefix(s.b[s.i:], []byte(lit)) {
		return s.fail(ErrSyntax, "invalid literal")
	}
	s.i += len(lit)
	return nil
}

func (s *scanner) number() error {
	b, i := s.b, s.i
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	default:
		s.i = i
		return s.fail(ErrSyntax, "invalid number")
	}
	if i < len(b) && b[i] == '.' {
		i++
		d := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == d {
			s.i = i
			return s.fail(ErrSyntax, "invalid number")
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		d := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == d {
			s.i = i
			return s.fail(ErrSyntax, "invalid number")
		}
	}
	s.i = i
	return nil
}

func (s *scanner) enter() error {
	s.depth++
	if s.depth > s.maxDepth {
		return s.fail(ErrDepth, fmt.Sprintf("more than %d levels", s.maxDepth))
	}
	return nil
}

func (s *scanner) array() error {
	if err := s.enter(); err != nil {
		return err
	}
	s.i++ // [
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == ']' {
		s.i++
		s.depth--
		return nil
	}
	for {
		s.ws()
		if err := s.value(roleNone); err != nil {
			return err
		}
		s.ws()
		if s.i >= len(s.b) {
			return s.fail(ErrSyntax, "unterminated array")
		}
		switch s.b[s.i] {
		case ',':
			s.i++
		case ']':
			s.i++
			s.depth--
			return nil
		default:
			return s.fail(ErrSyntax, "expected , or ]")
		}
	}
}

// dupLinear is how many keys an object may have before duplicates are
// found through a set instead of by comparison with every earlier key.
//
// Keys equal under Unicode case folding (bytes.EqualFold) are duplicates
// too where a reader may act on them: encoding/json, and so every Go
// server that decodes into structs, matches a key to a field
// case-insensitively (the last match wins), so {"name":"a","Name":"b"}
// would let the gateway decide on "a" while such a server runs "b". They
// are refused in the objects the gateway reads (the envelope, params,
// result, _meta) and anywhere in a request or notification (tool
// arguments); a response's content may hold them (an environment listing
// with PATH and path), as no decision reads it.
const dupLinear = 16

// FoldKey is a key's representative under case folding: each rune
// replaced by the least rune of its unicode.SimpleFold orbit, so that
// FoldKey(a) == FoldKey(b) exactly when bytes.EqualFold(a, b).
func FoldKey(k []byte) string {
	out := make([]byte, 0, len(k))
	for i := 0; i < len(k); {
		c := k[i]
		if c < utf8.RuneSelf {
			// ASCII letters fold among themselves, except that 'k' and
			// 's' share their orbits with the Kelvin sign and the long s:
			// the least rune of those orbits is still 'K' and 'S'.
			if 'a' <= c && c <= 'z' {
				c -= 'a' - 'A'
			}
			out = append(out, c)
			i++
			continue
		}
		r, n := utf8.DecodeRune(k[i:])
		least := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			least = min(least, f)
		}
		out = utf8.AppendRune(out, least)
		i += n
	}
	return string(out)
}

func (s *scanner) object(role objRole) error {
	if err := s.enter(); err != nil {
		return err
	}
	s.i++ // {
	base := len(s.keys)
	defer func() { s.keys = s.keys[:base] }()
	var set, exact map[string]struct{} // past dupLinear keys: folded, and as they are
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == '}' {
		s.i++
		s.depth--
		return nil
	}
	for {
		s.ws()
		if s.i >= len(s.b) || s.b[s.i] != '"' {
			return s.fail(ErrSyntax, "expected a key")
		}
		kStart := s.i
		escaped, err := s.str()
		if err != nil {
			return err
		}
		key := s.b[kStart+1 : s.i-1]
		if escaped {
			key = []byte(unquote(s.b[kStart:s.i]))
		}
		if set != nil {
			f := FoldKey(key)
			if _, dup := set[f]; dup {
				_, same := exact[string(key)]
				if err := s.dup(role, same, kStart); err != nil {
					return err
				}
			}
			set[f] = struct{}{}
			exact[string(key)] = struct{}{}
		} else {
			for _, k := range s.keys[base:] {
				if bytes.EqualFold(k, key) {
					if err := s.dup(role, bytes.Equal(k, key) || s.repeats(base, key), kStart); err != nil {
						return err
					}
					break
				}
			}
			if len(s.keys)-base >= dupLinear {
				set = make(map[string]struct{}, 2*dupLinear)
				exact = make(map[string]struct{}, 2*dupLinear)
				for _, k := range s.keys[base:] {
					set[FoldKey(k)] = struct{}{}
					exact[string(k)] = struct{}{}
				}
				set[FoldKey(key)] = struct{}{}
				exact[string(key)] = struct{}{}
			}
		}
		s.keys = append(s.keys, key)
		s.ws()
		if s.i >= len(s.b) || s.b[s.i] != ':' {
			return s.fail(ErrSyntax, "expected :")
		}
		s.i++
		s.ws()
		vStart := s.i
		name := ""
		if role != roleNone {
			if name = knownKey(key); name == "" {
				if like := caseVariant(key); like != "" {
					return s.fail(ErrKeyCase, fmt.Sprintf("a key is %q but for letter case", like))
				}
			}
		}
		if err := s.value(childRole(role, name)); err != nil {
			return err
		}
		if role != roleNone && s.record != nil {
			*s.record = append(*s.record, member{role: role, key: name, val: Span{vStart, s.i}})
		}
		s.ws()
		if s.i >= len(s.b) {
			return s.fail(ErrSyntax, "unterminated object")
		}
		switch s.b[s.i] {
		case ',':
			s.i++
		case '}':
			s.i++
			s.depth--
			return nil
		default:
			return s.fail(ErrSyntax, "expected , or }")
		}
	}
}

// repeats reports whether key is exactly one of the open object's earlier
// keys (at most dupLinear of them: past that a set answers).
func (s *scanner) repeats(base int, key []byte) bool {
	for _, k := range s.keys[base:] {
		if bytes.Equal(k, key) {
			return true
		}
	}
	return false
}

// dup judges a key (at offset at) equal but for letter case to one of the
// object's earlier keys (same: exactly equal to one): an exact repeat is refused everywhere,
// and so is a case variant in a recorded object; elsewhere the variant is
// noted (foldDup) for Parse.
func (s *scanner) dup(role objRole, same bool, at int) error {
	if same {
		return s.fail(ErrDuplicate, "a key repeats")
	}
	if role != roleNone {
		return s.fail(ErrDuplicate, "a key repeats (letter case aside)")
	}
	if s.foldDup == 0 {
		s.foldDup = at + 1
	}
	return nil
}

func childRole(parent objRole, key string) objRole {
	switch {
	case parent == roleTop && key == "params":
		return roleParams
	case parent == roleTop && key == "result":
		return roleResult
	case (parent == roleParams || parent == roleResult) && key == "_meta":
		return roleMeta
	}
	return roleNone
}

// strPlain marks bytes that need no attention inside a string.
var strPlain = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// skipPlain returns the index of the first byte at or after i that is not
// strPlain (len(b) if none): eight bytes at a time while none of them
// needs attention, then byte by byte.
func skipPlain(b []byte, i int) int {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	for ; i+8 <= len(b); i += 8 {
		x := binary.LittleEndian.Uint64(b[i:])
		// A byte's high bit is set in m if it is below 0x20, a quote or
		// a backslash (each test borrows there, and in no byte before
		// the first such one), or non-ASCII (the last term; the first
		// two together set it too); it may be set for a byte after the
		// first, which the byte loop below finds.
		m := (x - 0x20*ones) | ((x ^ '"'*ones) - ones) | ((x ^ '\\'*ones) - ones) | x
		if m&highs != 0 {
			break
		}
	}
	for i < len(b) && strPlain[b[i]] {
		i++
	}
	return i
}

// str validates the string at s.i (at its opening quote) and reports
// whether it contains escapes.
func (s *scanner) str() (escaped bool, err error) {
	b := s.b
	i := s.i + 1
	for {
		i = skipPlain(b, i)
		if i >= len(b) {
			s.i = i
			return false, s.fail(ErrSyntax, "unterminated string")
		}
		switch c := b[i]; {
		case c == '"':
			s.i = i + 1
			return escaped, nil
		case c == '\\':
			escaped = true
			n, err := escapeLen(b[i:])
			if err != nil {
				s.i = i
				return false, s.fail(err, "invalid escape")
			}
			i += n
		case c < 0x20:
			s.i = i
			return false, s.fail(ErrSyntax, "control character in string")
		default:
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size <= 1 {
				s.i = i
				return false, s.fail(ErrEncoding, "invalid UTF-8")
			}
			i += size
		}
	}
}

// escapeLen validates the escape at the start of b and returns its length.
// A \u escape of a high surrogate must be followed by one of a low
// surrogate; a lone low surrogate is refused.
func escapeLen(b []byte) (int, error) {
	if len(b) < 2 {
		return 0, ErrSyntax
	}
	switch b[1] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		return 2, nil
	case 'u':
		r, ok := hex4(b[2:])
		if !ok {
			return 0, ErrSyntax
		}
		switch {
		case r >= 0xDC00 && r <= 0xDFFF:
			return 0, ErrEncoding
		case r >= 0xD800 && r <= 0xDBFF:
			if len(b) < 12 || b[6] != '\\' || b[7] != 'u' {
				return 0, ErrEncoding
			}
			lo, ok := hex4(b[8:])
			if !ok || lo < 0xDC00 || lo > 0xDFFF {
				return 0, ErrEncoding
			}
			return 12, nil
		}
		return 6, nil
	}
	return 0, ErrSyntax
}

func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(d)
	}
	return r, true
}

// knownKeys are the keys the gateway reads in the objects whose members it
// records (the envelope, params, result and their _meta).
var knownKeys = [...]string{
	"jsonrpc",
	"id",
	"method",
	"params",
	"result",
	"error",
	"name",
	"arguments",
	"_meta",
	"uri",
	"cursor",
	"task",
	"taskId",
	"requestId",
	"progressToken",
	"progress",
	"traceparent",
	"dev.portcullis/intent",
	"dev.portcullis/caller",
	"level",
	"ref",
	"argument",
	"protocolVersion",
	"capabilities",
	"clientInfo",
	"serverInfo",
	"instructions",
	"content",
	"isError",
	"structuredContent",
	"tools",
	"prompts",
	"resources",
	"resourceTemplates",
	"nextCursor",
	"contents",
	"messages",
	"reason",
	"message",
	"data",
	"tasks",
	"status",
	"completion",
	"io.modelcontextprotocol/related-task",
}

var (
	known       = make(map[string]string, len(knownKeys)) // key -> itself, interned
	knownFolded = make(map[string]string, len(knownKeys)) // FoldKey(key) -> key
)

func init() {
	for _, k := range knownKeys {
		known[k] = k
		knownFolded[FoldKey([]byte(k))] = k
	}
}

// knownKey returns the interned name of a key the gateway reads, or "".
// It does not allocate.
func knownKey(k []byte) string { return known[string(k)] }

// caseVariant returns the known key that k equals but for letter case, or
// "" (k itself known, or like none). A recorded object holding such a key
// is refused: the gateway would read the member as absent, and a server
// decoding into structs (encoding/json) as the known one.
func caseVariant(k []byte) string {
	var buf [32]byte
	if len(k) <= len(buf) {
		n := 0
		for _, c := range k {
			if c >= utf8.RuneSelf {
				n = -1
				break
			}
			if 'a' <= c && c <= 'z' {
				c -= 'a' - 'A'
			}
			buf[n] = c
			n++
		}
		if n >= 0 {
			return knownFolded[string(buf[:n])] // foldKey of ASCII, without allocating
		}
	}
	return knownFolded[FoldKey(k)]
}
