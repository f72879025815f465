package policy

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

// Signed policy bundles: a C2SP signed note whose text is
//
//	portcullis-policy-bundle
//	<version>
//
// where version is the bundle's "sha256:<hex>" (Set.Version). With
// policy.require_signed the gateway refuses a bundle without a note that a
// trusted key signed for exactly its version.

const bundleHeader = "portcullis-policy-bundle"

// MaxSignatureBytes bounds a bundle signature file.
const MaxSignatureBytes = 16 << 10

// ErrUnsigned is returned by VerifyBundle when the signature does not
// verify for the bundle; the caller must refuse the bundle.
var ErrUnsigned = errors.New("policy bundle not signed by a trusted key")

// SignBundle signs the version of a bundle with a note signer key.
func SignBundle(version, skey string) ([]byte, error) {
	s, err := note.NewSigner(strings.TrimSpace(skey))
	if err != nil {
		return nil, fmt.Errorf("sign bundle: %w", err)
	}
	return note.Sign(&note.Note{Text: bundleHeader + "\n" + version + "\n"}, s)
}

// VerifyBundle checks that sig is a note signed by one of the trusted keys
// for exactly version.
func VerifyBundle(version string, sig []byte, trusted []string) error {
	if len(sig) == 0 || len(sig) > MaxSignatureBytes {
		return fmt.Errorf("%w: missing or oversize signature", ErrUnsigned)
	}
	var vs []note.Verifier
	for _, k := range trusted {
		v, err := note.NewVerifier(strings.TrimSpace(k))
		if err != nil {
			return fmt.Errorf("policy signing key: %w", err)
		}
		vs = append(vs, v)
	}
	n, err := note.Open(sig, note.VerifierList(vs...))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnsigned, err)
	}
	if n.Text != bundleHeader+"\n"+version+"\n" {
		return fmt.Errorf("%w: the signature is for another bundle", ErrUnsigned)
	}
	return nil
}
