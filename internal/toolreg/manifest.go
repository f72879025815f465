package toolreg

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

// A server manifest pins an upstream as an operator approved it: its
// identity, how it is launched, and the digests of the tool definitions it
// may serve. It is a C2SP signed note with the text
//
//	portcullis-server-manifest v1
//	upstream <name>
//	launch <sha256 of the launch spec>
//	tool <name> <definition digest>
//	...
//
// With manifests required, an upstream without a valid manifest is not
// started, and only the listed definitions are served.

const manifestHeader = "portcullis-server-manifest v1"

// MaxManifestBytes bounds a manifest file.
const MaxManifestBytes = 256 << 10

// Manifest is a verified manifest.
type Manifest struct {
	Upstream string
	Launch   string
	Tools    map[string]string // name -> digest
}

// LaunchDigest is the digest of a launch spec: the fields that decide what
// runs (never secret values, which are references resolved at launch).
func LaunchDigest(spec map[string]any) string {
	b, _ := json.Marshal(spec) // map keys are sorted
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// Text renders m as the manifest note text.
func (m *Manifest) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\nupstream %s\nlaunch %s\n", manifestHeader, m.Upstream, m.Launch)
	names := make([]string, 0, len(m.Tools))
	for n := range m.Tools {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(&b, "tool %s %s\n", n, m.Tools[n])
	}
	return b.String()
}

// SignManifest signs m with a note signer key.
func SignManifest(m *Manifest, skey string) ([]byte, error) {
	s, err := note.NewSigner(strings.TrimSpace(skey))
	if err != nil {
		return nil, fmt.Errorf("sign manifest: %w", err)
	}
	return note.Sign(&note.Note{Text: m.Text()}, s)
}

// ErrManifest is returned for a manifest that does not verify or parse.
var ErrManifest = errors.New("invalid server manifest")

// OpenManifest verifies msg with the trusted keys and parses it.
func OpenManifest(msg []byte, trusted []string) (*Manifest, error) {
	if len(msg) > MaxManifestBytes {
		return nil, fmt.Errorf("%w: too large", ErrManifest)
	}
	var vs []note.Verifier
	for _, k := range trusted {
		v, err := note.NewVerifier(strings.TrimSpace(k))
		if err != nil {
			return nil, fmt.Errorf("manifest key: %w", err)
		}
		vs = append(vs, v)
	}
	n, err := note.Open(msg, note.VerifierList(vs...))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrManifest, err)
	}
	lines := strings.Split(strings.TrimSuffix(n.Text, "\n"), "\n")
	if len(lines) < 3 || lines[0] != manifestHeader {
		return nil, fmt.Errorf("%w: not a v1 manifest", ErrManifest)
	}
	m := &Manifest{Tools: map[string]string{}}
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		switch {
		case len(f) == 2 && f[0] == "upstream":
			m.Upstream = f[1]
		case len(f) == 2 && f[0] == "launch":
			m.Launch = f[1]
		case len(f) == 3 && f[0] == "tool":
			m.Tools[f[1]] = f[2]
		default:
			return nil, fmt.Errorf("%w: line %q", ErrManifest, l)
		}
	}
	if m.Upstream == "" || m.Launch == "" {
		return nil, fmt.Errorf("%w: upstream and launch are required", ErrManifest)
	}
	return m, nil
}
