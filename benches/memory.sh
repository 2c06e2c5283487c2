#!/usr/bin/env bash
# The gateway's memory: resident set (VmRSS) per idle keep-alive connection, per stream in
# flight, and over a long run of requests (no growth). Same setup as benches/instructions.sh:
# the mock upstream (two endpoints), the gateway with retry, metrics and response headers.
#
#   bash benches/memory.sh                      # CONNECTIONS=1000 STREAMS=1000 REQUESTS=1000000
#   REQUESTS=200000 bash benches/memory.sh      # a shorter run
#
# The long run uses `oha` when it is installed (cargo install oha), else a Python load of
# keep-alive connections (slower: about a tenth of the rate).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

CONNECTIONS=${CONNECTIONS:-1000}
STREAMS=${STREAMS:-1000}
REQUESTS=${REQUESTS:-1000000}
UP1=127.0.0.1:18381
UP2=127.0.0.1:18382
SLOW1=127.0.0.1:18383
SLOW2=127.0.0.1:18384
GATEWAY=127.0.0.1:18391
STREAMING=127.0.0.1:18392
OUT=${CARGO_TARGET_DIR:-target}/memory
R=${CARGO_TARGET_DIR:-target}/release
mkdir -p "$OUT"
ulimit -n "$(ulimit -Hn)"

cargo build --release --bin llm-tower-gateway --example bench_upstream

PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

config() { # listen, upstream 1, upstream 2
    cat <<EOF
listen: $1
mount: /v1
client: { pool_max_idle_per_host: 4096 }
endpoints:
  - id: first
    base_url: http://$2/v1
    api_key: sk-bench-first
    retry_policy: { name: ExponentialBackoff, config: { times: 2 } }
  - id: second
    base_url: http://$3/v1
    api_key: sk-bench-second
    retry_policy: { name: ExponentialBackoff, config: { times: 2 } }
EOF
}
config "$GATEWAY" "$UP1" "$UP2" >"$OUT/gateway.yaml"
config "$STREAMING" "$SLOW1" "$SLOW2" >"$OUT/streaming.yaml"

# shellcheck source=support/wait_for.sh
. benches/support/wait_for.sh
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

"$R/examples/bench_upstream" "$UP1" "$UP2" >"$OUT/upstream.log" 2>&1 &
PIDS+=($!)
"$R/examples/bench_upstream" --slow-streams "$SLOW1" "$SLOW2" >"$OUT/slow.log" 2>&1 &
PIDS+=($!)
for addr in "$UP1" "$UP2" "$SLOW1" "$SLOW2"; do wait_for "$addr"; done
RUST_LOG=warn "$R/llm-tower-gateway" --config "$OUT/gateway.yaml" >"$OUT/gateway.log" 2>&1 &
GATEWAY_PID=$!
PIDS+=("$GATEWAY_PID")
RUST_LOG=warn "$R/llm-tower-gateway" --config "$OUT/streaming.yaml" >"$OUT/streaming.log" 2>&1 &
STREAMING_PID=$!
PIDS+=("$STREAMING_PID")
wait_for "$GATEWAY"
wait_for "$STREAMING"

# Holds N connections open, each after one request (`stream`: a streamed request whose first
# chunk was read, the rest still to come), prints `ready` when all are, then waits for
# stdin to close.
hold() { # address, n, stream (0 or 1)
    python3 - "$1" "$2" "$3" <<'PY'
import socket, sys
host, port = sys.argv[1].rsplit(":", 1)
n, stream = int(sys.argv[2]), sys.argv[3] == "1"
body = ('{"model":"mock-model","stream":true,"messages":[{"role":"user","content":"Say hello."}]}'
        if stream else '{"model":"mock-model","messages":[{"role":"user","content":"Say hello."}]}')
request = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}:{port}\r\n"
           f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n{body}").encode()
held = []
for _ in range(n):
    s = socket.create_connection((host, int(port)))
    s.sendall(request)
    got = b""
    # A whole JSON answer, or a stream's head and first event.
    while not (b"\r\n\r\n" in got and (got.endswith(b"}") or b"data: " in got.split(b"\r\n\r\n", 1)[1])):
        chunk = s.recv(65536)
        if not chunk:
            sys.exit("connection closed early: " + got.decode(errors="replace")[:200])
        got += chunk
    if b" 200 " not in got.split(b"\r\n", 1)[0]:
        sys.exit("not 200: " + got.decode(errors="replace")[:200])
    held.append(s)
print("ready", flush=True)
sys.stdin.read()
PY
}

per_held() { # name, pid, address, n, stream
    local name=$1 pid=$2 addr=$3 n=$4 stream=$5 before after
    hold "$addr" 10 "$stream" </dev/null >/dev/null # warm: pools, first allocations
    sleep 1
    before=$(rss_kib "$pid")
    exec 4> >(hold "$addr" "$n" "$stream" >"$OUT/hold.out")
    for _ in $(seq 600); do grep -q ready "$OUT/hold.out" 2>/dev/null && break; sleep 0.2; done
    grep -q ready "$OUT/hold.out" || { echo "$name: the connections did not all get their answer" >&2; exit 1; }
    sleep 1
    after=$(rss_kib "$pid")
    exec 4>&-
    sleep 1
    awk -v b="$before" -v a="$after" -v n="$n" -v name="$name" \
        'BEGIN { printf "%-32s %8d KiB -> %8d KiB: %6.1f KiB each\n", name, b, a, (a - b) / n }'
}

load() { # url, n
    if command -v oha >/dev/null; then
        oha --no-tui -n "$2" -c 32 -m POST -H 'Content-Type: application/json' \
            -d '{"model":"mock-model","messages":[{"role":"user","content":"Say hello."}]}' "$1" \
            | awk '/Success rate|Requests\/sec/ { print "    " $0 }'
    else
        python3 - "$1" "$2" <<'PY'
import http.client, sys, threading, urllib.parse
url, total = urllib.parse.urlsplit(sys.argv[1]), int(sys.argv[2])
body = '{"model":"mock-model","messages":[{"role":"user","content":"Say hello."}]}'
bad = []
def send(n):
    conn = http.client.HTTPConnection(url.hostname, url.port)
    for _ in range(n):
        conn.request("POST", url.path, body, {"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            bad.append(response.status)
threads = [threading.Thread(target=send, args=(total // 8,)) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
if bad: sys.exit(f"{len(bad)} answers not 200")
PY
    fi
}

per_held "idle keep-alive connection" "$GATEWAY_PID" "$GATEWAY" "$CONNECTIONS" 0
per_held "stream in flight" "$STREAMING_PID" "$STREAMING" "$STREAMS" 1

URL="http://$GATEWAY/v1/chat/completions"
WARM=$((REQUESTS / 10))
load "$URL" "$WARM"
sleep 6 # the metrics' histograms are drained every 5 s
# Two rounds: memory the allocator keeps after the first (its pages, the metrics' sketches
# reaching their size) is not growth; a leak grows in both.
warm=$(rss_kib "$GATEWAY_PID")
echo "after $WARM requests: $warm KiB"
for round in 1 2; do
    load "$URL" "$REQUESTS"
    sleep 6
    after=$(rss_kib "$GATEWAY_PID")
    awk -v w="$warm" -v a="$after" -v n="$REQUESTS" -v r="$round" \
        'BEGIN { printf "round %d, %d more requests: %8d KiB (%+d KiB)\n", r, n, a, a - w }'
    warm=$after
done
