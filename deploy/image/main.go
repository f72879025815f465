// Command image builds Portcullis' container image without a container
// engine: one layer on an empty base holding the static binary, the
// system's CA certificates and an /etc/passwd naming the image's user, with
// OCI labels for the version, revision and licence. The image is written
// as an OCI image layout (a directory any registry client can push:
// `crane push --index`, `skopeo copy oci:DIR ...`) and, with -tar, as a
// tarball `docker load` and `podman load` accept.
//
//	go run ./deploy/image -binary bin/portcullis -o dist/image [-tar dist/portcullis.tar]
//
// The image is reproducible: file times and the creation time are the
// source revision's commit time (or the Unix epoch), so one binary gives
// one digest.
package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// The image's user: not root, and not nobody (65534), which the sandbox
// maps tool servers to.
const (
	uid      = 65532
	binPath  = "usr/local/bin/portcullis"
	certPath = "etc/ssl/certs/ca-certificates.crt"
	dataDir  = "var/lib/portcullis"
)

type options struct {
	binary, certs, out, tarOut, ref string
	version, revision               string
	created                         time.Time
}

func main() {
	var o options
	var created string
	flag.StringVar(&o.binary, "binary", "bin/portcullis", "the portcullis binary (static: CGO_ENABLED=0, as scripts/build.sh builds it)")
	flag.StringVar(&o.certs, "certs", "/etc/ssl/certs/ca-certificates.crt", "CA certificates to include (PEM bundle)")
	flag.StringVar(&o.out, "o", "dist/image", "OCI image layout directory to write (replaced)")
	flag.StringVar(&o.tarOut, "tar", "", "also write a tarball for docker load / podman load")
	flag.StringVar(&o.ref, "ref", "portcullis:dev", "the image's name in the tarball")
	flag.StringVar(&o.version, "version", "dev", "release version (label org.opencontainers.image.version)")
	flag.StringVar(&o.revision, "revision", "", "source revision (label org.opencontainers.image.revision)")
	flag.StringVar(&created, "created", "", "creation time, RFC 3339 (default: the Unix epoch)")
	flag.Parse()
	if created != "" {
		t, err := time.Parse(time.RFC3339, created)
		if err != nil {
			fail(fmt.Errorf("-created: %w", err))
		}
		o.created = t
	}
	img, err := build(o)
	if err != nil {
		fail(err)
	}
	if err := write(img, o); err != nil {
		fail(err)
	}
	d, _ := img.Digest()
	fmt.Printf("image %s written to %s\n", d, o.out)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "image:", err)
	os.Exit(1)
}

// build assembles the image.
func build(o options) (v1.Image, error) {
	bin, err := os.ReadFile(o.binary)
	if err != nil {
		return nil, err
	}
	if len(bin) < 4 || !bytes.Equal(bin[:4], []byte("\x7fELF")) {
		return nil, fmt.Errorf("%s is not an ELF executable", o.binary)
	}
	certs, err := os.ReadFile(o.certs)
	if err != nil {
		return nil, fmt.Errorf("CA certificates: %w", err)
	}
	files, err := layerTar(bin, certs, o.created)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(files)), nil })
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS = "amd64", "linux"
	cf.Created = v1.Time{Time: o.created.UTC()}
	cf.Config = v1.Config{
		User:       fmt.Sprintf("%d:%d", uid, uid),
		Entrypoint: []string{"/" + binPath},
		Cmd:        []string{"serve", "--config", "/etc/portcullis/portcullis.yaml"},
		Env:        []string{"SSL_CERT_FILE=/" + certPath, "PATH=/usr/local/bin"},
		WorkingDir: "/" + dataDir,
		ExposedPorts: map[string]struct{}{
			"8470/tcp": {}, // agents (MCP)
			"8471/tcp": {}, // admin: metrics, health, admin API, console
		},
		Volumes: map[string]struct{}{"/" + dataDir: {}},
		Labels: map[string]string{
			"org.opencontainers.image.title":    "portcullis",
			"org.opencontainers.image.version":  o.version,
			"org.opencontainers.image.revision": o.revision,
			"org.opencontainers.image.licenses": "Apache-2.0",
			"org.opencontainers.image.source":   "https://github.com/portcullis-dev/portcullis",
		},
	}
	return mutate.ConfigFile(img, cf)
}

// layerTar is the image's one layer: directories, the binary, the CA
// bundle and a passwd/group naming the image's user.
func layerTar(bin, certs []byte, at time.Time) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dir := func(p string, mode int64, owner int) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: p + "/", Mode: mode, Uid: owner, Gid: owner, ModTime: at, Format: tar.FormatPAX})
	}
	file := func(p string, mode int64, body []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: p, Mode: mode, Size: int64(len(body)), ModTime: at, Format: tar.FormatPAX}); err != nil {
			return err
		}
		_, err := tw.Write(body)
		return err
	}
	passwd := fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\nportcullis:x:%d:%d:portcullis:/%s:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n", uid, uid, dataDir)
	group := fmt.Sprintf("root:x:0:\nportcullis:x:%d:\nnogroup:x:65534:\n", uid)
	var errs []error
	for _, d := range []string{"etc", "etc/ssl", "etc/ssl/certs", "etc/portcullis", "usr", "usr/local", "usr/local/bin", "var", "var/lib"} {
		errs = append(errs, dir(d, 0o755, 0))
	}
	errs = append(errs,
		dir("tmp", 0o1777, 0),
		dir(dataDir, 0o700, uid),
		file("etc/passwd", 0o644, []byte(passwd)),
		file("etc/group", 0o644, []byte(group)),
		file(certPath, 0o644, certs),
		file(binPath, 0o755, bin),
		tw.Close(),
	)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// write replaces the layout directory and writes the tarball.
func write(img v1.Image, o options) error {
	if err := os.RemoveAll(o.out); err != nil {
		return err
	}
	p, err := layout.Write(o.out, empty.Index)
	if err != nil {
		return err
	}
	annotations := map[string]string{"org.opencontainers.image.ref.name": refTag(o.ref)}
	if err := p.AppendImage(img, layout.WithAnnotations(annotations)); err != nil {
		return err
	}
	if o.tarOut == "" {
		return nil
	}
	tag, err := name.NewTag(o.ref)
	if err != nil {
		return fmt.Errorf("-ref: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(o.tarOut), 0o755); err != nil {
		return err
	}
	return tarball.WriteToFile(o.tarOut, tag, img)
}

func refTag(ref string) string {
	if i := strings.LastIndex(ref, ":"); i >= 0 && !strings.Contains(ref[i:], "/") {
		return ref[i+1:]
	}
	return "latest"
}
