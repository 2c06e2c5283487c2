#!/usr/bin/env bash
# Instructions per request on the balancer's healthy path, for every strategy at 2, 64 and
# 1 024 endpoints (callgrind: deterministic, unlike time on a shared VM).
#
#   bash benches/balancer/instructions.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)"; exit 2; }
cargo build --release --example balancer_instructions
BIN=target/release/examples/balancer_instructions
instructions() {
    valgrind --tool=callgrind --callgrind-out-file=/dev/null "$BIN" "$@" 2>&1 |
        sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
SHORT=2000
LONG=12000
printf '%-16s %10s %10s %10s\n' strategy 2 64 1024
for strategy in round_robin weighted least_in_flight least_latency; do
    row=$(printf '%-16s' "$strategy")
    for n in 2 64 1024; do
        short=$(instructions "$strategy" "$n" "$SHORT")
        long=$(instructions "$strategy" "$n" "$LONG")
        row+=$(printf ' %10d' $(((long - short) / (LONG - SHORT))))
    done
    echo "$row"
done
