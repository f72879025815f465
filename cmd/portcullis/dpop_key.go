package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/portcullis-dev/portcullis/internal/token"
)

// MaxKeyFileBytes bounds a key file read by `task jkt`.
const MaxKeyFileBytes = 64 << 10

// dpopKeyCmds are `task keygen` and `task jkt`: the key a task token is
// bound to, and its RFC 7638 thumbprint that `task start --jkt` takes.
func dpopKeyCmds() []*cobra.Command {
	var out string
	keygen := &cobra.Command{
		Use:   "keygen --out FILE",
		Short: "Make a DPoP key for an agent (ECDSA P-256, PKCS#8 PEM, mode 0600) and print its thumbprint for task start --jkt",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return errors.New("give --out FILE: the key is written for its owner only, never printed")
			}
			if _, err := os.Stat(out); err == nil {
				return fmt.Errorf("%s exists: a key is not overwritten (tokens bound to it would stop working)", out)
			}
			key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if err != nil {
				return err
			}
			der, err := x509.MarshalPKCS8PrivateKey(key)
			if err != nil {
				return err
			}
			if err := writePrivate(out, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})); err != nil {
				return err
			}
			jkt, err := token.Thumbprint(&key.PublicKey)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), jkt)
			return nil
		},
	}
	keygen.Flags().StringVarP(&out, "out", "o", "", "file to write the private key to")
	jkt := &cobra.Command{
		Use:   "jkt KEYFILE",
		Short: "Print the RFC 7638 thumbprint of a key (PEM: PKCS#8 or SEC 1 private key, or public key) for task start --jkt",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pub, err := readPublicKey(args[0])
			if err != nil {
				return err
			}
			tp, err := token.Thumbprint(pub)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			fmt.Fprintln(cmd.OutOrStdout(), tp)
			return nil
		},
	}
	return []*cobra.Command{keygen, jkt}
}

// readPublicKey reads the public half of a PEM key file.
func readPublicKey(path string) (crypto.PublicKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxKeyFileBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxKeyFileBytes {
		return nil, fmt.Errorf("%s: over %d bytes, not a key file", path, MaxKeyFileBytes)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%s: no PEM block", path)
	}
	switch blk.Type {
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("%s: not a signing key", path)
		}
		return s.Public(), nil
	case "EC PRIVATE KEY":
		k, err := x509.ParseECPrivateKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return k.Public(), nil
	case "PUBLIC KEY":
		k, err := x509.ParsePKIXPublicKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return k, nil
	}
	return nil, fmt.Errorf("%s: a %q PEM block, want PRIVATE KEY, EC PRIVATE KEY or PUBLIC KEY", path, blk.Type)
}
