#!/usr/bin/env bash
# Installs what the end-to-end tests need into .cache/ (ignored by git):
# the reference MCP servers and the TypeScript SDK client, at pinned versions.
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=.cache/npm
mkdir -p "$prefix"
cp testdata/npm/client.mjs testdata/npm/rewrite-description.mjs "$prefix/"
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
