#!/usr/bin/env bash
# Instructions per request of the bare proxy and of the gateway, end to end on loopback
# (callgrind: deterministic, unlike time on a shared VM). Same setup as benches/e2e.sh: the
# mock upstream (two endpoints), the gateway with retry, metrics and response headers, the
# bare proxy to the first endpoint, the same POST body.
#
# Per proxy: start it under callgrind, send WARMUP requests at concurrency C, zero the
# counters, send REQUESTS more on the same connections, dump, divide. Only the proxy runs
# under valgrind; the load generator (python, below) and the mock do not count.
#
#   bash benches/instructions.sh            # WARMUP=1000 REQUESTS=4000 C=4
#   KEEP=1 bash benches/instructions.sh     # keep the dumps in target/instructions (callgrind_annotate)
#   GATEWAY_EXTRA='usage: false' bash benches/instructions.sh   # top-level keys added to the gateway's file
#   ENDPOINT_EXTRA='hedge: { after: 2s }' bash benches/instructions.sh   # keys added to each endpoint
#   STREAM=1 bash benches/instructions.sh   # the requests ask for a stream (the mock's: 3 chunks)
#   FRAMES=50 bash benches/instructions.sh  # streams of 50 chunks, each its own frame, a
#                                           # millisecond apart (WARMUP=100 REQUESTS=400 unless
#                                           # set): two runs' difference over the chunks'
#                                           # difference is the gateway's cost per event (the
#                                           # bare proxy buffers the whole stream)
#   SDK_HEADERS=1 bash benches/instructions.sh   # each request carries the headers the OpenAI
#                                           # Python SDK sends (16 in all, a key among them), not 4
#   CACHE=1 bash benches/instructions.sh    # also simulate the caches and branch predictor, and
#                                           # print estimated cycles per request (below)
#   STACK=1 bash benches/instructions.sh    # also the library's stack alone (benches/e2e/stack_proxy.rs:
#                                           # Upstream with response headers, on the bare proxy's
#                                           # server; no front door, request ids, metrics or usage):
#                                           # what the layers cost, apart from the product around them
#                                           # (STREAM, SDK_HEADERS, CACHE and STACK: 0 or empty is off)
#
# Estimated cycles (CACHE=1): instructions + 10 per first-level cache miss (instructions or
# data) + 100 per last-level miss (KCachegrind's weights) + 15 per mispredicted branch.
# Instructions alone undercount what a request costs on the hardware: the gateway runs more
# distinct code per request than the bare proxy (instruction cache misses) and moves larger
# futures (data cache misses). `benches/e2e.sh`'s CPU time per request follows the estimate,
# its ratio pulled towards 1 by the kernel's time (the same system calls for both):
# BENCHMARKS.md, issue 34's sixth step. The caches are set, not taken from the machine:
# 32 KiB 8-way first level, 8 MiB 16-way last level (valgrind's default last level copies
# the host's, here a direct-mapped one whose conflicts came and went between runs of the same
# binary).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)"; exit 2; }

# A switch is on when set to anything but empty or 0.
on() { [ -n "${1:-}" ] && [ "$1" != 0 ]; }
UPSTREAM_ARGS=()
if on "${FRAMES:-}"; then
    STREAM=1
    UPSTREAM_ARGS=(--stream-chunks "$FRAMES")
    WARMUP=${WARMUP:-100}
    REQUESTS=${REQUESTS:-400}
fi
WARMUP=${WARMUP:-1000}
REQUESTS=${REQUESTS:-4000}
C=${C:-4}
UP1=127.0.0.1:18281 # ports apart from e2e.sh's, so both can run on one machine
UP2=127.0.0.1:18282
BARE=127.0.0.1:18290
GATEWAY=127.0.0.1:18291
STACK_ADDR=127.0.0.1:18292
if on "${STREAM:-}"; then
    BODY='{"model":"mock-model","stream":true,"messages":[{"role":"user","content":"Say hello."}]}'
else
    BODY='{"model":"mock-model","messages":[{"role":"user","content":"Say hello."}]}'
fi
OUT=${CARGO_TARGET_DIR:-target}/instructions
R=${CARGO_TARGET_DIR:-target}/release
mkdir -p "$OUT"
rm -f "$OUT"/callgrind.*

cargo build --release --bin llm-tower-gateway --example bare_proxy --example bench_upstream \
    --example stack_proxy

PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

# The gateway's configuration of benches/e2e.sh (arm 3).
cat >"$OUT/gateway.yaml" <<EOF
listen: $GATEWAY
mount: /v1
client: { }
endpoints:
  - id: first
    base_url: http://$UP1/v1
    api_key: sk-bench-first
    retry_policy: { name: ExponentialBackoff, config: { times: 2 } }
    ${ENDPOINT_EXTRA:-}
  - id: second
    base_url: http://$UP2/v1
    api_key: sk-bench-second
    retry_policy: { name: ExponentialBackoff, config: { times: 2 } }
    ${ENDPOINT_EXTRA:-}
${GATEWAY_EXTRA:-}
EOF

# shellcheck source=support/wait_for.sh
. benches/support/wait_for.sh

# (The `+` form: an empty array is "unbound" to `set -u` in bash before 4.4.)
"$R/examples/bench_upstream" ${UPSTREAM_ARGS[@]+"${UPSTREAM_ARGS[@]}"} "$UP1" "$UP2" >"$OUT/upstream.log" 2>&1 &
PIDS+=($!)
wait_for "$UP1"
wait_for "$UP2"

# The load: C keep-alive connections, WARMUP requests, zero the counters, REQUESTS requests,
# dump. Every request is the same POST and must answer 200. The gateway drains its metric
# histograms every 5 s (admin.rs, spawn_metrics_upkeep), at a cost per sample: waiting SETTLE
# seconds before zeroing and before dumping makes the dump hold the drain of exactly the
# measured requests, whatever the timing (without it, runs differ by up to 2 %).
SETTLE=${SETTLE:-6}
load() { # url, pid
    local sdk=
    if on "${SDK_HEADERS:-}"; then sdk=1; fi
    python3 - "$1" "$WARMUP" "$REQUESTS" "$C" "$BODY" "$2" "$SETTLE" "$sdk" <<'PY'
import http.client, subprocess, sys, threading, time, urllib.parse
url, warmup, requests, c, body, pid, settle, sdk = sys.argv[1:9]
warmup, requests, c, settle = int(warmup), int(requests), int(c), float(settle)
headers = {"Content-Type": "application/json"}
if sdk:
    # What openai-python 1.x sends with each request (its _base_client.py and
    # _build_headers), http.client adding Host, Accept-Encoding and Content-Length.
    headers.update({
        "Accept": "application/json",
        "User-Agent": "OpenAI/Python 1.99.9",
        "X-Stainless-Lang": "python",
        "X-Stainless-Package-Version": "1.99.9",
        "X-Stainless-OS": "Linux",
        "X-Stainless-Arch": "x64",
        "X-Stainless-Runtime": "CPython",
        "X-Stainless-Runtime-Version": "3.12.3",
        "X-Stainless-Async": "false",
        "x-stainless-retry-count": "0",
        "x-stainless-read-timeout": "600",
        "Authorization": "Bearer sk-client-not-a-real-key",
    })
target = urllib.parse.urlsplit(url)
conns = [http.client.HTTPConnection(target.hostname, target.port) for _ in range(c)]
bad = []
def send(conn, n):
    for _ in range(n):
        conn.request("POST", target.path, body, headers)
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            bad.append(response.status)
def phase(total):
    threads = [threading.Thread(target=send, args=(conn, total // c + (i < total % c)))
               for i, conn in enumerate(conns)]
    for t in threads: t.start()
    for t in threads: t.join()
    if bad: sys.exit(f"{len(bad)} answers not 200, e.g. {bad[0]}")
phase(warmup)
time.sleep(settle)
subprocess.run(["callgrind_control", "-z", pid], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
phase(requests)
time.sleep(settle)
subprocess.run(["callgrind_control", "-d", pid], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
PY
}

SIMULATE=()
if on "${CACHE:-}"; then SIMULATE=(--cache-sim=yes --branch-sim=yes --I1=32768,8,64 --D1=32768,8,64 --LL=8388608,16,64); fi

measure() { # name, listen address, url, command...
    local name=$1 addr=$2 url=$3 pid
    shift 3
    valgrind --tool=callgrind "${SIMULATE[@]}" --callgrind-out-file="$OUT/callgrind.$name" "$@" \
        >"$OUT/$name.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_for "$addr"
    load "$url" "$pid" || exit 1
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    # `callgrind_control -d` wrote the file numbered .1; its summary line is the
    # instructions between -z and -d, all threads.
    awk -v n="$REQUESTS" '/^summary:/ { printf "%d\n", $2 / n }' "$OUT/callgrind.$name.1"
}

BARE_IR=$(measure bare "$BARE" "http://$BARE/v1/chat/completions" \
    "$R/examples/bare_proxy" "$BARE" "http://$UP1/v1")
GATEWAY_IR=$(RUST_LOG=warn measure gateway "$GATEWAY" "http://$GATEWAY/v1/chat/completions" \
    "$R/llm-tower-gateway" --config "$OUT/gateway.yaml")

printf '%-12s %26s\n' proxy "instructions per request"
printf '%-12s %26d\n' bare "$BARE_IR" gateway "$GATEWAY_IR"
if on "${STACK:-}"; then
    STACK_IR=$(measure stack "$STACK_ADDR" "http://$STACK_ADDR/v1/chat/completions" \
        "$R/examples/stack_proxy" "$STACK_ADDR" "http://$UP1/v1" "http://$UP2/v1")
    printf '%-12s %26d\n' "library stack" "$STACK_IR"
    awk -v s="$STACK_IR" -v b="$BARE_IR" 'BEGIN { printf "library stack / bare: %.3f\n", s / b }'
fi
awk -v g="$GATEWAY_IR" -v b="$BARE_IR" 'BEGIN { printf "gateway / bare: %.3f\n", g / b }'
if on "${CACHE:-}"; then
    # The summary's events, in the order of its `events:` line: Ir Dr Dw I1mr D1mr D1mw ILmr
    # DLmr DLmw Bc Bcm Bi Bim.
    estimate() {
        awk -v n="$REQUESTS" '/^summary:/ {
            printf "%d %d %d %d %d\n", ($2 + 10 * ($5 + $6 + $7) + 100 * ($8 + $9 + $10) \
                + 15 * ($12 + $14)) / n, ($5) / n, ($6 + $7) / n, ($8 + $9 + $10) / n, ($12 + $14) / n
        }' "$OUT/callgrind.$1.1"
    }
    printf '\n%-12s %16s %8s %8s %8s %8s\n' proxy "cycles (est.)" "I1 miss" "D1 miss" "LL miss" mispred
    for name in bare gateway; do
        # shellcheck disable=SC2046 # the five numbers, one per column
        printf '%-12s %16d %8d %8d %8d %8d\n' "$name" $(estimate "$name")
    done
    awk -v g="$(estimate gateway | cut -d' ' -f1)" -v b="$(estimate bare | cut -d' ' -f1)" \
        'BEGIN { printf "estimated cycles, gateway / bare: %.3f\n", g / b }'
fi
[ -n "${KEEP:-}" ] || rm -f "$OUT"/callgrind.*
