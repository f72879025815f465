#!/usr/bin/env bash
# Builds a release binary with its version stamped in (portcullis --version
# prints it with the commit, its time and the toolchain, which Go records).
#   VERSION   the release (default: git describe, or dev)
#   OUT       the output path (default: bin/portcullis)
set -euo pipefail
cd "$(dirname "$0")/.."
version=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
out=${OUT:-bin/portcullis}
CGO_ENABLED=0 go build -trimpath \
  -ldflags "-s -w -X github.com/portcullis-dev/portcullis/internal/buildinfo.version=${version}" \
  -o "$out" ./cmd/portcullis
"$out" --version
