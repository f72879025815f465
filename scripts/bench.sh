#!/usr/bin/env bash
# Performance figures for docs/performance.md: the in-process pipeline
# benchmarks (go test -bench) and the round-trip harness, which measures
# direct and gateway calls interleaved in one run and prints the ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench/results
go build -o bench/results/portcullis ./cmd/portcullis
echo "== in-process pipeline (go test -bench)"
go test ./internal/gateway ./internal/mcpproxy ./internal/screen -run '^$' -bench 'Authenticate|VerifyToken|Decide|Record|Call|Observe|Normalize|DetectPersonal' -benchtime "${BENCHTIME:-2s}" | tee bench/results/pipeline.txt
echo
echo "== audit log: durable appends and verification of a million events"
go test ./internal/audit -run '^$' -bench 'RecordDurable|VerifyMillion' -benchtime 1x -timeout 20m | tee bench/results/audit.txt
go test ./internal/audit -run '^$' -bench 'RecordDurable' -benchtime "${BENCHTIME:-3s}" | tee -a bench/results/audit.txt
echo
echo "== round trips through the gateway (store.synchronous=full)"
go run ./bench/roundtrip -portcullis bench/results/portcullis -sync full -json bench/results/roundtrip-full.json "$@"
echo
echo "== round trips through the gateway (store.synchronous=normal)"
go run ./bench/roundtrip -portcullis bench/results/portcullis -sync normal -sessions 0 -json bench/results/roundtrip-normal.json "$@"
