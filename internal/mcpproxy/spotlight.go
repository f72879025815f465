package mcpproxy

import (
	"crypto/rand"
	"encoding/hex"
	"strings"
	"sync"
)

// Spotlighting modes (Hines et al., "Defending Against Indirect Prompt
// Injection Attacks With Spotlighting", 2024): mark untrusted tool output
// as data before the agent reads it, so that its system prompt can tell the
// model never to follow instructions inside the marks.
const (
	// SpotlightDelimit wraps each text block between markers carrying a
	// per-session random token, which content cannot forge.
	SpotlightDelimit = "delimit"
	// SpotlightDatamark also interleaves DataMark between the words of the
	// text, so that every word of it reads as data.
	SpotlightDatamark = "datamark"
)

// DataMark is the character datamarking puts in place of whitespace.
const DataMark = "ˆ"

// sessionToken is a session's random spotlight token, made on first use.
type sessionToken struct {
	once  sync.Once
	token string
}

func (s *sessionToken) get() string {
	s.once.Do(func() {
		b := make([]byte, 8)
		rand.Read(b) // never fails (crypto/rand panics rather than returning short)
		s.token = hex.EncodeToString(b)
	})
	return s.token
}

// spotlightText marks one text as data, by mode, with the session's
// token. Prompts are not spotlighted: they are instructions by design.
func spotlightText(s, mode, token string) string {
	// The token is secret to the session, but strip any occurrence so that
	// not even a leaked token lets content close the block early.
	s = strings.ReplaceAll(s, token, "")
	if mode == SpotlightDatamark {
		s = strings.Join(strings.Fields(s), DataMark)
	}
	return "<untrusted-data " + token + ">\n" + s + "\n</untrusted-data " + token + ">"
}
