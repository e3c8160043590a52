#!/usr/bin/env bash
# Connection flood: how a well-behaved client fares while one address floods labgate with new
# TLS connections. The well-behaved client (127.0.0.1) opens RATE new TLS connections a second,
# one request each, timed from the TCP connect to the response's last byte (benches'
# tls-connect, open loop: a connection kept waiting is charged from when it was due); the
# flood comes from 127.0.0.3, FLOOD connections at a time, each followed at once by the next
# (tls-connect closed loop), past labgate's default 256 per address, so it also meets the
# per-address bound. labgate runs with its default connection bounds, pinned to CPU 1 with
# its nginx backend; both clients share CPU 0. Reports the well-behaved client's p50/p99/p99.9
# alone, then under the flood, the flood's own completed and failed connections, and
# labgate's refusal counters.
#
#   benches/load/connflood.sh                   # 10 s per run, release build
#   FLOOD=128 RATE=200 DURATION=20 benches/load/connflood.sh
#   LABGATE=/tmp/labgate-old benches/load/connflood.sh   # another binary
#
# Needs: nginx-light curl util-linux (apt-get install ...).
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=benches/load/lib.sh
source benches/load/lib.sh
DURATION=${DURATION:-10}
RATE=${RATE:-100}
FLOOD=${FLOOD:-512}
LABGATE=${LABGATE:-target/release/labgate}
for cmd in nginx curl taskset; do
  command -v "$cmd" >/dev/null || { echo "missing $cmd: apt-get install nginx-light curl util-linux"; exit 1; }
done
[ -x "$LABGATE" ] || cargo build --release --bin labgate
[ -x target/release/tls-connect ] || cargo build --release -p labgate-benches --bin tls-connect
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; pkill -f "$work" 2>/dev/null || true; rm -rf "$work"' EXIT
chmod 755 "$work"
mkdir -p "$work/www" "$work/state"
head -c 1024 /dev/zero | tr '\0' x > "$work/www/1k"
HOST=app.bench.test
BACKEND=18080
PORT=18441
https_bench_files "$PORT"

taskset -c 1 nginx -c "$work/backend.conf" -p "$work" >/dev/null 2>&1 &
LABGATE_LOG=${LABGATE_LOG:-warn} taskset -c 1 "$LABGATE" run --config "$work/labgate.toml" \
  --state-dir "$work/state" >"$work/labgate.out" 2>"$work/labgate.log" &
for _ in $(seq 1 150); do
  grep -q '^labgate: ready' "$work/labgate.out" 2>/dev/null \
    && curl -sk --resolve "$HOST:$PORT:127.0.0.1" "https://$HOST:$PORT/1k" 2>/dev/null | grep -q xxxx && break
  sleep 0.1
done
curl -sk --resolve "$HOST:$PORT:127.0.0.1" "https://$HOST:$PORT/1k" | grep -q xxxx \
  || { echo "labgate did not start: $(tail -5 "$work/labgate.log")"; exit 1; }
admin=$(sed -n 's|^labgate: admin listening on http://||p' "$work/labgate.out")

client() { # -> tls-connect's line for the well-behaved client
  taskset -c 0 target/release/tls-connect "127.0.0.1:$PORT" "$HOST" /1k --rate "$RATE" \
    --duration "$DURATION" --from 127.0.0.1 2>/dev/null
}
field() { awk -v k="$1" '{ for (i = 1; i < NF; i++) if ($i == k) print $(i + 1) }'; }
show() { # label line
  printf '%-22s requests %5s errors %4s  p50 %7s ms  p99 %7s ms  p99.9 %7s ms\n' "$1" \
    "$(echo "$2" | field requests)" "$(echo "$2" | field errors)" "$(echo "$2" | field total_p50_ms)" \
    "$(echo "$2" | field total_p99_ms)" "$(echo "$2" | field total_p999_ms)"
}

echo "labgate $LABGATE ($(git describe --always --dirty 2>/dev/null)); well-behaved client: $RATE new TLS connections/s from 127.0.0.1; flood: $FLOOD at a time from 127.0.0.3; ${DURATION} s each"
alone=$(client)
show "alone" "$alone"
taskset -c 0 target/release/tls-connect "127.0.0.1:$PORT" "$HOST" /1k --concurrency "$FLOOD" \
  --duration $((DURATION + 2)) --from 127.0.0.3 >"$work/flood.out" 2>"$work/flood.err" &
flood=$!
# The flood reaches its bound within a second.
sleep 1
under=$(client)
wait "$flood" || true
show "under the flood" "$under"
show "the flood itself" "$(cat "$work/flood.out")"
curl -s "http://$admin/metrics" | grep -E '^labgate_(http_connections_refused_total\{listener="https"|tls_handshake_failures_total)' \
  | sed 's/^/  /'
