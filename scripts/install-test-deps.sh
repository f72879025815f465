#!/usr/bin/env bash
# Installs what the end-to-end tests need into .cache/ (ignored by git):
# the reference MCP servers, the TypeScript SDK client, and the official MCP
# conformance suite with the Node 22 it needs and its reference server's
# dependencies, at pinned versions. The conformance reference server's source
# comes from ../shared/conformance (beside the checkout, as in CI).
set -euo pipefail
cd "$(dirname "$0")/.."
# Chromium (Debian's) for the tests that drive pages in a real browser.
if ! command -v chromium >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get install -y -q chromium >/dev/null || { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q chromium >/dev/null; }
fi
# PostgreSQL (Debian's) for the store conformance suite and the fleet tests:
# the tests start their own server from its programs (internal/pgtest).
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get install -y -q postgresql >/dev/null || { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q postgresql >/dev/null; }
fi
prefix=.cache/npm
mkdir -p "$prefix"
# The tests run stdio servers in the built-in sandbox, as the unprivileged
# user nobody when they run as root: the servers' code under this checkout
# must be reachable by it (through its parent folders, not into them).
if [ "$(id -u)" -eq 0 ]; then
  p=$(pwd -P)
  while [ "$p" != "/" ]; do chmod o+x "$p"; p=$(dirname "$p"); done
fi
cp testdata/npm/client.mjs testdata/npm/rewrite-description.mjs testdata/npm/oauth-client.mjs testdata/npm/consent-browser.mjs testdata/npm/console-browser.mjs "$prefix/"
ref=../shared/conformance/reference-server/everything-server.ts
if [ -f "$ref" ]; then
  mkdir -p "$prefix/conformance"
  cp "$ref" "$prefix/conformance/everything-server.ts"
  chmod u+w "$prefix/conformance/everything-server.ts"
else
  echo "install-test-deps: $ref not found; the conformance test will fail" >&2
fi
# Skip when the installed tree matches the pinned lockfile.
if [ -d "$prefix/node_modules" ] && cmp -s testdata/npm/package-lock.json "$prefix/package-lock.json"; then
  exit 0
fi
cp testdata/npm/package.json "$prefix/package.json"
if [ -f testdata/npm/package-lock.json ]; then
  cp testdata/npm/package-lock.json "$prefix/package-lock.json"
  npm ci --prefix "$prefix" --no-audit --no-fund --loglevel=error
else
  npm install --prefix "$prefix" --no-audit --no-fund --loglevel=error
fi
