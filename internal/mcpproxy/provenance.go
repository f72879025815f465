package mcpproxy

import (
	"hash/maphash"
	"slices"
	"sync"

	"github.com/portcullis-dev/portcullis/internal/screen"
	"github.com/portcullis-dev/portcullis/internal/wire"
)

// Argument provenance. The gateway remembers, per session, the values that
// identify where data goes (email addresses, URL hosts, IBANs, long numbers
// such as account and phone numbers) and whether it first saw each one in
// untrusted output. A call argument carrying such a value is flagged to
// policy as untrusted (context.untrusted_arguments): the classic injected
// "send the report to attacker@evil.test" or "pay to this IBAN" then needs
// whatever the policy says, typically a human.
//
// First sight decides: a value already seen in trusted output stays
// trusted, and one first seen in untrusted output stays untrusted however
// often it comes back. Call arguments are never an origin, so a compromised
// agent cannot launder a value by mentioning it first.

// Provenance bounds.
const (
	maxOrigins      = 4096    // remembered values per session (oldest forgotten first)
	maxScannedBytes = 1 << 20 // text scanned per result
)

var originSeed = maphash.MakeSeed()

// origins remembers where a session first saw each indicator. Keys are
// 64-bit hashes (the values themselves are not kept).
type origins struct {
	mu        sync.Mutex
	untrusted map[uint64]bool
	order     []uint64 // insertion order, for forgetting the oldest
}

// observe records the indicators in the text of a result read from a source
// that is untrusted or not.
func (o *origins) observe(texts []string, untrusted bool) {
	norm := make([]string, len(texts))
	for i, t := range texts {
		if len(t) > maxScannedBytes {
			t = t[:maxScannedBytes]
		}
		// Normalised first: an address hidden from a scan by zero-width
		// characters, entities or base64 is still read by the model.
		norm[i] = screen.Normalize(t).Text
	}
	o.observeNormalized(norm, untrusted)
}

// observeNormalized is observe of texts already normalised.
func (o *origins) observeNormalized(texts []string, untrusted bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.untrusted == nil {
		o.untrusted = map[uint64]bool{}
	}
	for _, t := range texts {
		if len(t) > maxScannedBytes {
			t = t[:maxScannedBytes]
		}
		screen.Destinations(t, func(v string) {
			h := maphash.String(originSeed, v)
			if _, seen := o.untrusted[h]; seen {
				return
			}
			if len(o.order) >= maxOrigins {
				delete(o.untrusted, o.order[0])
				o.order = o.order[1:]
			}
			o.untrusted[h] = untrusted
			o.order = append(o.order, h)
		})
	}
}

// untrustedArguments returns the names of the top-level arguments whose
// values carry an indicator first seen in untrusted output, sorted. raw
// must be valid JSON (the arguments as parsed).
func (o *origins) untrustedArguments(raw []byte) []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.untrusted) == 0 || len(raw) == 0 {
		return nil
	}
	obj := wire.Span{Start: 0, End: len(raw)}
	if !wire.IsObject(raw, obj) {
		return nil
	}
	var out []string
	wire.Members(raw, obj, func(k, v wire.Span) bool {
		tainted := false
		wire.Strings(raw, v, func(_ string, sp wire.Span) {
			if tainted {
				return
			}
			text, _ := wire.String(raw, sp)
			screen.Destinations(screen.Normalize(text).Text, func(d string) {
				if o.untrusted[maphash.String(originSeed, d)] {
					tainted = true
				}
			})
		})
		if tainted {
			name, _ := wire.String(raw, k)
			out = append(out, name)
		}
		return true
	})
	slices.Sort(out)
	return slices.Compact(out)
}
