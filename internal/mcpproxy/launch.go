package mcpproxy

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
)

// Launch pinning: what an upstream runs must be what the operator approved.

// ErrLaunchRefused is returned by a dialer that refuses to start a server.
var ErrLaunchRefused = errors.New("launch refused")

// CheckExecutable resolves command on PATH and, when want is set, checks
// the binary's SHA-256.
func CheckExecutable(command, want string) (string, error) {
	path, err := exec.LookPath(command)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrLaunchRefused, err)
	}
	if want == "" {
		return path, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrLaunchRefused, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("%w: %v", ErrLaunchRefused, err)
	}
	got := hex.EncodeToString(h.Sum(nil))
	if subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
		return "", fmt.Errorf("%w: %s has SHA-256 %s, pinned %s", ErrLaunchRefused, path, got, want)
	}
	return path, nil
}

var exactNPM = regexp.MustCompile(`^(@[a-z0-9][a-z0-9._-]*/)?[a-z0-9][a-z0-9._-]*@\d+\.\d+\.\d+([-+][0-9A-Za-z.-]+)?$`)

// CheckPackagePinned refuses a package-runner launch (npx, bunx, uvx,
// pipx run) whose package is not pinned to an exact version ("@latest", a
// range, or no version at all would run whatever is published next).
func CheckPackagePinned(command string, args []string) error {
	switch filepath.Base(command) {
	case "npx", "bunx":
	default:
		return nil
	}
	for _, a := range args {
		if strings.HasPrefix(a, "-") {
			continue
		}
		if !exactNPM.MatchString(a) {
			return fmt.Errorf("%w: %s %s is not pinned to an exact version (use name@x.y.z)", ErrLaunchRefused, filepath.Base(command), a)
		}
		return nil
	}
	return fmt.Errorf("%w: no package in %v", ErrLaunchRefused, args)
}

// SPKIPinnedTLS returns a TLS config that, besides the usual verification,
// requires the server's leaf key to hash to pin (base64 SHA-256 of its
// SubjectPublicKeyInfo).
func SPKIPinnedTLS(pin string) (*tls.Config, error) {
	want, err := base64.StdEncoding.DecodeString(pin)
	if err != nil || len(want) != sha256.Size {
		return nil, errors.New("spki_sha256: want the base64 SHA-256 of the server's SubjectPublicKeyInfo")
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("spki pin: no server certificate")
			}
			got := SPKIHash(cs.PeerCertificates[0])
			if subtle.ConstantTimeCompare(got, want) != 1 {
				return fmt.Errorf("spki pin: server key %s does not match the pin", base64.StdEncoding.EncodeToString(got))
			}
			return nil
		},
	}, nil
}

// SPKIHash is the SHA-256 of a certificate's SubjectPublicKeyInfo.
func SPKIHash(c *x509.Certificate) []byte {
	s := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return s[:]
}
