package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// TestImage builds the image from a stand-in binary and reads it back from
// the OCI layout and the tarball: one layer with the binary (executable),
// the CA bundle, the user's passwd entry and a data directory it owns; a
// non-root user, the entrypoint and labels in the config; the same digest
// for the same inputs.
func TestImage(t *testing.T) {
	dir := t.TempDir()
	bin := append([]byte("\x7fELF"), bytes.Repeat([]byte{0x90}, 4096)...)
	writeTestFile(t, filepath.Join(dir, "portcullis"), bin)
	writeTestFile(t, filepath.Join(dir, "certs.pem"), []byte("-----BEGIN CERTIFICATE-----\n"))
	o := options{binary: filepath.Join(dir, "portcullis"), certs: filepath.Join(dir, "certs.pem"), out: filepath.Join(dir, "oci"),
		tarOut: filepath.Join(dir, "image.tar"), ref: "portcullis:test", version: "v1.2.3", revision: "abc", created: time.Unix(1700000000, 0)}
	img, err := build(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := write(img, o); err != nil {
		t.Fatal(err)
	}
	want, _ := img.Digest()

	idx, err := layout.ImageIndexFromPath(o.out)
	if err != nil {
		t.Fatal(err)
	}
	m, err := idx.IndexManifest()
	if err != nil || len(m.Manifests) != 1 || m.Manifests[0].Digest != want || m.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != "test" {
		t.Fatalf("layout index: %+v %v", m, err)
	}
	got, err := idx.Image(want)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := got.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Config.User != "65532:65532" || cf.Config.Entrypoint[0] != "/usr/local/bin/portcullis" || cf.Config.Labels["org.opencontainers.image.version"] != "v1.2.3" || cf.OS != "linux" || !cf.Created.Time.Equal(o.created) {
		t.Fatalf("config: %+v", cf)
	}
	layers, err := got.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers: %d %v", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	seen := map[string]*tar.Header{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		seen[h.Name] = h
		if h.Name == binPath {
			body, _ := io.ReadAll(tr)
			if !bytes.Equal(body, bin) {
				t.Fatal("the binary in the layer differs from the one given")
			}
		}
	}
	if h := seen[binPath]; h == nil || h.Mode != 0o755 {
		t.Fatalf("binary entry %+v", h)
	}
	if h := seen[dataDir+"/"]; h == nil || h.Uid != uid || h.Mode != 0o700 {
		t.Fatalf("data directory entry %+v", h)
	}
	for _, p := range []string{certPath, "etc/passwd", "etc/group", "tmp/"} {
		if seen[p] == nil {
			t.Errorf("%s missing from the layer", p)
		}
	}

	// The tarball loads as the same image.
	fromTar, err := tarball.ImageFromPath(o.tarOut, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := fromTar.Digest(); d != want {
		t.Fatalf("tarball image %s, layout %s", d, want)
	}
	// Reproducible: the same inputs, the same digest.
	again, err := build(o)
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := again.Digest(); d != want {
		t.Fatalf("rebuilt as %s, first %s", d, want)
	}
	// Not a binary: refused.
	writeTestFile(t, o.binary, []byte("#!/bin/sh\n"))
	if _, err := build(o); err == nil {
		t.Fatal("a script was accepted as the binary")
	}
}

func writeTestFile(t *testing.T, p string, b []byte) {
	t.Helper()
	if err := os.WriteFile(p, b, 0o755); err != nil {
		t.Fatal(err)
	}
}
