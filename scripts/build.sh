#!/usr/bin/env bash
# Builds a release binary with its version stamped in (portcullis --version
# prints it with the commit, its time and the toolchain, which Go records).
#   VERSION   the release (default: git describe, or dev)
#   OUT       the output path (default: bin/portcullis)
set -euo pipefail
cd "$(dirname "$0")/.."
version=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
revision=$(git rev-parse HEAD 2>/dev/null || true)
out=${OUT:-bin/portcullis}
pkg=github.com/portcullis-dev/portcullis/internal/buildinfo
CGO_ENABLED=0 go build -trimpath -buildvcs=auto \
  -ldflags "-s -w -X ${pkg}.version=${version} -X ${pkg}.revision=${revision}" \
  -o "$out" ./cmd/portcullis
"$out" --version
