#!/usr/bin/env bash
# Throughput and p99 of the bare proxy and the gateway at saturation, each proxy pinned to
# core 0 and the load (oha) and the mock upstream to core 1, in interleaved rounds, so that
# both arms see the same machine. Same setup as benches/instructions.sh.
#
#   bash benches/pinned.sh            # ROUNDS=5 DURATION=8s
#
# Needs oha (cargo install oha) and taskset.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
command -v oha >/dev/null || { echo "needs oha (cargo install oha)"; exit 2; }
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-8s}
R=${CARGO_TARGET_DIR:-target}/release
OUT=${CARGO_TARGET_DIR:-target}/pinned
UP1=127.0.0.1:18481
UP2=127.0.0.1:18482
BARE=127.0.0.1:18490
GATEWAY=127.0.0.1:18491
BODY='{"model":"mock-model","messages":[{"role":"user","content":"Say hello."}]}'
mkdir -p "$OUT"
cargo build --release --bin llm-tower-gateway --example bare_proxy --example bench_upstream

cat >"$OUT/gateway.yaml" <<EOF2
listen: $GATEWAY
mount: /v1
client: { }
endpoints:
  - { id: first, base_url: http://$UP1/v1, api_key: sk-bench-first, retry_policy: { name: ExponentialBackoff, config: { times: 2 } } }
  - { id: second, base_url: http://$UP2/v1, api_key: sk-bench-second, retry_policy: { name: ExponentialBackoff, config: { times: 2 } } }
EOF2
PIDS=()
trap 'for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done' EXIT
taskset -c 1 "$R/examples/bench_upstream" "$UP1" "$UP2" >"$OUT/upstream.log" 2>&1 &
PIDS+=($!)
sleep 1
taskset -c 0 "$R/examples/bare_proxy" "$BARE" "http://$UP1/v1" >"$OUT/bare.log" 2>&1 &
PIDS+=($!)
RUST_LOG=warn taskset -c 0 "$R/llm-tower-gateway" --config "$OUT/gateway.yaml" >"$OUT/gateway.log" 2>&1 &
PIDS+=($!)
sleep 2
echo "round proxy req/s success p99_ms"
for round in $(seq "$ROUNDS"); do
    for arm in bare gateway; do
        port=$BARE
        [ "$arm" = gateway ] && port=$GATEWAY
        taskset -c 1 oha --no-tui --output-format json -z "$DURATION" -c 32 -m POST \
            -T application/json -d "$BODY" "http://$port/v1/chat/completions" |
            python3 -c 'import json, sys; d = json.load(sys.stdin); print(sys.argv[1], sys.argv[2], round(d["summary"]["requestsPerSec"]), d["summary"]["successRate"], round(d["latencyPercentiles"]["p99"] * 1000, 2))' "$round" "$arm"
    done
done
