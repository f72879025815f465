#!/usr/bin/env bash
# Builds the container image without a container engine: the static binary
# (scripts/build.sh), then one layer on an empty base (deploy/image), written
# as an OCI layout in dist/image and a tarball for docker/podman load.
#   VERSION, REF (default portcullis:VERSION)
set -euo pipefail
cd "$(dirname "$0")/.."
version=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
VERSION=$version OUT=bin/portcullis ./scripts/build.sh >/dev/null
revision=$(git rev-parse HEAD 2>/dev/null || echo "")
created=$(git log -1 --format=%cI 2>/dev/null || echo 1970-01-01T00:00:00Z)
go run ./deploy/image -binary bin/portcullis -o dist/image -tar dist/portcullis.tar \
  -ref "${REF:-portcullis:$version}" -version "$version" -revision "$revision" -created "$created"
