#!/usr/bin/env bash
# Performance figures for docs/performance.md: the in-process pipeline
# benchmarks (go test -bench), the round-trip harness, which measures
# direct, bare-hop and gateway calls interleaved in one run and prints the
# ratios, and with SOAK=1 the soak under 200 and 1,000 concurrent sessions
# (about 25 minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench/results
go build -o bench/results/portcullis ./cmd/portcullis
go build -o bench/results/barehop ./bench/barehop
echo "== in-process pipeline (go test -bench)"
go test ./internal/authn ./internal/gateway ./internal/mcpproxy ./internal/screen -run '^$' -bench 'Authenticate|VerifyToken|Decide|Record|Call|Observe|Normalize|DetectPersonal' -benchtime "${BENCHTIME:-2s}" | tee bench/results/pipeline.txt
echo
echo "== content screening of 4 KB (a typical JSON result; the harness's prose), median of 5, as a ratio to decoding the JSON in the same run"
go test ./internal/screen -run '^$' -bench 'ScreenResultJSON|ScreenResultProse|DecodeBaselineJSON|DetectInjectionJSON|DetectSecretsJSON|ClassifierGate' -benchtime "${BENCHTIME:-2s}" -count 5 | tee bench/results/screen.txt
awk '/^Benchmark/ { name=$1; sub(/-[0-9]+$/, "", name); n[name]++; v[name, n[name]]=$3 }
  END {
    for (b in n) {
      for (i = 2; i <= n[b]; i++) for (j = i; j > 1 && v[b, j-1] > v[b, j]; j--) { t=v[b, j]; v[b, j]=v[b, j-1]; v[b, j-1]=t }
      med[b]=v[b, int((n[b]+1)/2)]
    }
    base=med["BenchmarkDecodeBaselineJSON"]
    for (b in med) printf "%-44s median %8.1f µs  %6.1f MB/s  %5.2fx decode\n", b, med[b]/1000, 4096*1000/med[b], med[b]/base
  }' bench/results/screen.txt | sort
echo
echo "== audit log: durable appends and verification of a million events"
go test ./internal/audit -run '^$' -bench 'RecordDurable|VerifyMillion' -benchtime 1x -timeout 20m | tee bench/results/audit.txt
go test ./internal/audit -run '^$' -bench 'RecordDurable' -benchtime "${BENCHTIME:-3s}" | tee -a bench/results/audit.txt
echo
echo "== round trips: direct, a bare reverse-proxy hop and the gateway, interleaved in one run (ratios against the hop)"
go run ./bench/roundtrip -portcullis bench/results/portcullis -barehop bench/results/barehop -sync full -runs "${RUNS:-5}" -json bench/results/roundtrip-full.json "$@"
echo
echo "== the same with audit.sync=before_answer (every answer waits for its decision's fsync)"
go run ./bench/roundtrip -portcullis bench/results/portcullis -barehop bench/results/barehop -sync full -runs "${RUNS:-5}" -sessions 0 -json bench/results/roundtrip-before-answer.json "$@" -audit-sync before_answer
echo
echo "== the same with store.synchronous=normal (no fsync)"
go run ./bench/roundtrip -portcullis bench/results/portcullis -barehop bench/results/barehop -sync normal -sessions 0 -json bench/results/roundtrip-normal.json "$@"

echo
echo "== a fleet: SQLite against PostgreSQL, one and three gateways; revocation propagation"
go run ./bench/fleet -portcullis bench/results/portcullis | tee bench/results/fleet.txt

if [ "${SOAK:-0}" = 1 ]; then
  echo
  echo "== soak: 200 and 1,000 concurrent sessions, ten minutes each, against 16 in the same run"
  go run ./bench/soak -portcullis bench/results/portcullis -sessions 200,1000 -duration "${SOAK_DURATION:-10m}" | tee bench/results/soak.txt
fi
