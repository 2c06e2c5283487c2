#!/usr/bin/env bash
# End-to-end benchmark of llm-tower on loopback, all arms in one run, same load tool (oha),
# same upstream (llm-tower-mock, 0 ms delay), same client settings:
#
#   1. direct      — oha straight to the mock provider
#   2. bare proxy  — benches/e2e/bare_proxy.rs: same hyper server and hyper-util client/pool,
#                    request body buffered, no llm-tower layers
#   3. gateway     — the llm-tower-gateway binary with the full stack: two healthy endpoints, retry
#                    and fallback configured, tower-http middleware, metrics
#   4. gateway, one endpoint down — arm 3 with the second endpoint refusing connections
#   5. library stack only — benches/e2e/stack_proxy.rs: `Upstream::build` (error responses,
#                    balancer, retry, auth, client) on the bare proxy's server, without the
#                    gateway's router, middleware and front door: what the layers cost
#   6. scale: the bare proxy and the gateway at $WIDE_CONCURRENCY connections, speaking
#                    HTTP/1.1 to the upstream (a pool of connections) and HTTP/2 (h2c: one
#                    connection per host, multiplexed)
#
# Per arm: requests/s at fixed concurrency (closed loop), and proxy CPU time per request
# (utime+stime from /proc/PID/stat over the closed-loop run). Then p50/p99/p99.9 latency at a
# fixed rate of half the *gateway's* closed-loop throughput (with oha's latency correction),
# so that neither proxy runs near its capacity and queueing does not dominate.
#
#   bash benches/e2e.sh                 # DURATION=10s CONCURRENCY=32 WIDE_CONCURRENCY=256
#   DURATION=20s bash benches/e2e.sh
#
# The proxy under test runs on core 0; the mock and oha on core 1 (when there are 2+ cores).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

DURATION=${DURATION:-10s}
CONCURRENCY=${CONCURRENCY:-32}
WIDE_CONCURRENCY=${WIDE_CONCURRENCY:-256}
UP1=127.0.0.1:18181
UP2=127.0.0.1:18182
BARE=127.0.0.1:18190
GATEWAY=127.0.0.1:18191
GATEWAY_DOWN=127.0.0.1:18192
STACK=127.0.0.1:18193
BARE_H2=127.0.0.1:18194
GATEWAY_H2=127.0.0.1:18195
DOWN=127.0.0.1:18199 # nothing listens here
BODY='{"model":"mock-model","messages":[{"role":"user","content":"Say hello."}]}'
OUT=target/e2e
mkdir -p "$OUT"

if ! command -v oha >/dev/null 2>&1; then
    echo "installing oha"
    cargo install --locked oha
fi
cargo build --release --bin llm-tower-gateway --example bare_proxy --example bench_upstream --example stack_proxy
R=target/release/examples
GW=target/release/llm-tower-gateway

if [ "$(nproc)" -ge 2 ]; then
    PROXY_CPU=(taskset -c 0)
    LOAD_CPU=(taskset -c 1)
else
    PROXY_CPU=()
    LOAD_CPU=()
fi

PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

gateway_config() { # listen, second endpoint, client section (optional)
    cat <<EOF
listen: $1
mount: /v1
client: { ${3:-} }
endpoints:
  - id: first
    base_url: http://$UP1/v1
    api_key: sk-bench-first
    retry_policy: { name: ExponentialBackoff, config: { times: 2 } }
  - id: second
    base_url: http://$2/v1
    api_key: sk-bench-second
    retry_policy: { name: ExponentialBackoff, config: { times: 2 } }
EOF
}
gateway_config "$GATEWAY" "$UP2" >"$OUT/gateway.yaml"
gateway_config "$GATEWAY_DOWN" "$DOWN" >"$OUT/gateway-down.yaml"
gateway_config "$GATEWAY_H2" "$UP2" "http2_only: true" >"$OUT/gateway-h2.yaml"

"${LOAD_CPU[@]}" "$R/bench_upstream" "$UP1" "$UP2" >"$OUT/upstream.log" 2>&1 &
PIDS+=($!)
"${PROXY_CPU[@]}" "$R/bare_proxy" "$BARE" "http://$UP1/v1" >"$OUT/bare.log" 2>&1 &
BARE_PID=$!
PIDS+=("$BARE_PID")
"${PROXY_CPU[@]}" "$R/stack_proxy" "$STACK" "http://$UP1/v1" "http://$UP2/v1" >"$OUT/stack.log" 2>&1 &
STACK_PID=$!
PIDS+=("$STACK_PID")
RUST_LOG=warn "${PROXY_CPU[@]}" "$GW" --config "$OUT/gateway.yaml" >"$OUT/gateway.log" 2>&1 &
GATEWAY_PID=$!
PIDS+=("$GATEWAY_PID")
RUST_LOG=warn "${PROXY_CPU[@]}" "$GW" --config "$OUT/gateway-down.yaml" >"$OUT/gateway-down.log" 2>&1 &
GATEWAY_DOWN_PID=$!
PIDS+=("$GATEWAY_DOWN_PID")
"${PROXY_CPU[@]}" "$R/bare_proxy" "$BARE_H2" "http://$UP1/v1" h2c >"$OUT/bare-h2.log" 2>&1 &
BARE_H2_PID=$!
PIDS+=("$BARE_H2_PID")
RUST_LOG=warn "${PROXY_CPU[@]}" "$GW" --config "$OUT/gateway-h2.yaml" >"$OUT/gateway-h2.log" 2>&1 &
GATEWAY_H2_PID=$!
PIDS+=("$GATEWAY_H2_PID")

for addr in $UP1 $UP2 $BARE $STACK $GATEWAY $GATEWAY_DOWN $BARE_H2 $GATEWAY_H2; do
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/${addr%:*}/${addr#*:}") 2>/dev/null; then break; fi
        sleep 0.1
    done
done

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

oha_run() { # name, url, extra oha args...
    local name=$1 url=$2
    shift 2
    "${LOAD_CPU[@]}" oha --no-tui --output-format json -m POST -T application/json -d "$BODY" "$@" "$url" >"$OUT/$name.json"
}

closed_loop() { # name, url, pid (or -), concurrency (optional)
    local name=$1 url=$2 pid=$3 conc=${4:-$CONCURRENCY} before after
    oha_run "$name-warmup" "$url" -c "$conc" -z 2s
    [ "$pid" = - ] || before=$(cpu_ticks "$pid")
    oha_run "$name-closed" "$url" -c "$conc" -z "$DURATION"
    [ "$pid" = - ] || after=$(cpu_ticks "$pid")
    python3 - "$OUT/$name-closed.json" "${before:-0}" "${after:-0}" "$pid" >"$OUT/$name-closed.txt" <<'PY'
import json, os, sys
data = json.load(open(sys.argv[1]))
ok = data["statusCodeDistribution"].get("200", 0)
total = sum(data["statusCodeDistribution"].values())
rps = data["summary"]["requestsPerSec"]
cpu = "-"
if sys.argv[4] != "-" and total:
    seconds = (float(sys.argv[3]) - float(sys.argv[2])) / os.sysconf("SC_CLK_TCK")
    cpu = f"{seconds / total * 1e6:.1f}"
print(f"{rps:.0f} {cpu} {ok} {total}")
PY
}

open_loop() { # name, url, rate
    oha_run "$1-open" "$2" -c "$CONCURRENCY" -z "$DURATION" -q "$3" --latency-correction
    python3 - "$OUT/$1-open.json" >"$OUT/$1-open.txt" <<'PY'
import json, sys
p = json.load(open(sys.argv[1]))["latencyPercentiles"]
print(" ".join(f"{p[k] * 1000:.3f}" for k in ("p50", "p99", "p99.9")))
PY
}

echo "closed loop: $CONCURRENCY connections for $DURATION per arm"
closed_loop direct "http://$UP1/v1/chat/completions" -
closed_loop bare "http://$BARE/v1/chat/completions" "$BARE_PID"
closed_loop gateway "http://$GATEWAY/v1/chat/completions" "$GATEWAY_PID"
closed_loop gateway-down "http://$GATEWAY_DOWN/v1/chat/completions" "$GATEWAY_DOWN_PID"
closed_loop stack "http://$STACK/chat/completions" "$STACK_PID"
echo "closed loop: $WIDE_CONCURRENCY connections, HTTP/1.1 and h2c to the upstream"
closed_loop bare-wide "http://$BARE/v1/chat/completions" "$BARE_PID" "$WIDE_CONCURRENCY"
closed_loop gateway-wide "http://$GATEWAY/v1/chat/completions" "$GATEWAY_PID" "$WIDE_CONCURRENCY"
closed_loop bare-h2 "http://$BARE_H2/v1/chat/completions" "$BARE_H2_PID" "$WIDE_CONCURRENCY"
closed_loop gateway-h2 "http://$GATEWAY_H2/v1/chat/completions" "$GATEWAY_H2_PID" "$WIDE_CONCURRENCY"

GATEWAY_RPS=$(cut -d' ' -f1 "$OUT/gateway-closed.txt")
RATE=$((GATEWAY_RPS / 2))
echo "open loop: $RATE requests/s (half the gateway's throughput) for $DURATION per arm"
open_loop direct "http://$UP1/v1/chat/completions" "$RATE"
open_loop bare "http://$BARE/v1/chat/completions" "$RATE"
open_loop gateway "http://$GATEWAY/v1/chat/completions" "$RATE"

python3 - "$OUT" "$RATE" "$CONCURRENCY" "$WIDE_CONCURRENCY" <<'PY' | tee "$OUT/results.md"
import sys
out, rate, conc, wide = sys.argv[1:5]
def read(name):
    try:
        return open(f"{out}/{name}.txt").read().split()
    except FileNotFoundError:
        return None
rows = [("direct to the mock", "direct"), ("bare hyper proxy", "bare"),
        ("gateway, full stack", "gateway"), ("gateway, one endpoint refusing", "gateway-down"),
        ("library stack only (no router, middleware, front door)", "stack")]
bare = read("bare-closed")
print(f"| arm | req/s (closed loop, c={conc}) | vs bare | CPU µs/req | vs bare | p50 ms | p99 ms | p99.9 ms (at {rate} req/s) | 200s / total |")
print("|---|---|---|---|---|---|---|---|---|")
for label, name in rows:
    closed = read(f"{name}-closed")
    opened = read(f"{name}-open") or ["-", "-", "-"]
    rps, cpu, ok, total = closed
    ratio = f"{float(rps) / float(bare[0]):.2f}"
    cpu_ratio = "-" if cpu == "-" else f"{float(cpu) / float(bare[1]):.2f}"
    print(f"| {label} | {rps} | {ratio} | {cpu} | {cpu_ratio} | {opened[0]} | {opened[1]} | {opened[2]} | {ok} / {total} |")
down, up = read("gateway-down-closed"), read("gateway-closed")
print(f"\none endpoint down / all healthy (gateway throughput): {float(down[0]) / float(up[0]):.2f}")
print(f"\n| c={wide} | req/s, HTTP/1.1 upstream | CPU µs/req | req/s, h2c upstream | CPU µs/req | h2c / HTTP/1.1 | 200s / total (h2c) |")
print("|---|---|---|---|---|---|---|")
for label, h1, h2 in (("bare proxy", "bare-wide", "bare-h2"), ("gateway", "gateway-wide", "gateway-h2")):
    a, b = read(f"{h1}-closed"), read(f"{h2}-closed")
    print(f"| {label} | {a[0]} | {a[1]} | {b[0]} | {b[1]} | {float(b[0]) / float(a[0]):.2f} | {b[2]} / {b[3]} |")
bw, gw = read("bare-wide-closed"), read("gateway-wide-closed")
print(f"\ngateway / bare at c={wide}, HTTP/1.1 upstream: {float(gw[0]) / float(bw[0]):.2f}")
PY
