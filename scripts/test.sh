#!/usr/bin/env bash
# The whole test suite: formatting, vet, staticcheck, and every test (with the
# race detector on the security core). Installs the test peers first.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-test-deps.sh

echo "== gofmt"
unformatted=$(gofmt -l cmd internal bench deploy 2>/dev/null || true)
if [ -n "$unformatted" ]; then
  echo "gofmt would change:"; echo "$unformatted"; exit 1
fi

echo "== go vet"
go vet ./...

echo "== staticcheck"
go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

echo "== go test"
go test -race -count=1 -timeout 20m ./...
