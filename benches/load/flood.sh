#!/usr/bin/env bash
# DNS flood benchmark (issue 21): a random-subdomain flood (dnsperf, never-repeated names under
# example.com) through a resolver whose only upstream reads and never answers, while a
# well-behaved client of the same network asks an internal name every 50 ms (1 s timeout).
# labgate against Unbound (1 thread) and dnsmasq, one after the other, each pinned to CPU 0,
# dnsperf and the prober on CPU 1.
#
# Reports per server: RSS at idle and its peak during the flood (sampled every 200 ms), the
# internal name's answered share and p50/p99 latency during the flood, queries the flood got
# answered (all SERVFAIL: the upstream is silent) and lost, and the server's CPU per answer.
# Targets (issue 21): peak RSS <= 2 x idle + 16 MiB, 100 % of the internal name answered with
# p99 <= 10 ms, flood answers >= Unbound's.
#
#   benches/load/flood.sh                               # 30k q/s for 20 s, release build
#   RATE=60000 DURATION=10 SERVERS="labgate unbound" benches/load/flood.sh
#   BASE=/tmp/labgate-old SERVERS="labgate base" benches/load/flood.sh   # two builds
#
# Needs: dnsperf, unbound, dnsmasq, python3 (apt-get install dnsperf unbound dnsmasq-base).
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=benches/load/lib.sh
source benches/load/lib.sh
RATE=${RATE:-30000}
DURATION=${DURATION:-20}
CLIENTS=${CLIENTS:-20}
# dnsperf stops sending once this many are unanswered (its default, 100, would pace a flood
# by the server it floods).
OUTSTANDING=${OUTSTANDING:-30000}
# Enough names that none repeats within a run.
NAMES=${NAMES:-$((RATE * DURATION))}
SERVERS=${SERVERS:-"labgate unbound dnsmasq"}
for cmd in dnsperf unbound dnsmasq python3 taskset; do
  command -v "$cmd" >/dev/null || { echo "missing $cmd: apt-get install dnsperf unbound dnsmasq-base python3 util-linux"; exit 1; }
done
[ -x target/release/labgate ] || cargo build --release --bin labgate
[[ " $SERVERS " = *" base "* ]] && [ ! -x "${BASE:-}" ] && { echo "BASE=<labgate binary> is needed for the server 'base'"; exit 1; }
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
SILENT=15410

# The flood's names: never repeated within a run.
seq 1 "$NAMES" | awk '{printf "r%d-%d.example.com A\n", $1, int(rand() * 1e9)}' > "$work/names"

printf '[listen]\ndns = ["127.0.0.1:15401"]\nadmin = "127.0.0.1:0"\nhttps = []\nhttp = []\n\n[dns]\nupstreams = ["udp://127.0.0.1:%s"]\n\n' $SILENT > "$work/labgate.toml"
printf '[[network]]\nname = "lan"\ncidrs = ["127.0.0.0/8"]\naddresses = ["127.0.0.1"]\n\n[[zone]]\nname = "lab.test"\n\n' >> "$work/labgate.toml"
printf '[[record]]\nname = "nas.lab.test"\ntype = "A"\nvalue = "10.0.20.10"\n' >> "$work/labgate.toml"
cat > "$work/unbound.conf" <<EOF
server:
  interface: 127.0.0.1
  port: 15402
  num-threads: 1
  do-daemonize: no
  use-syslog: no
  username: ""
  chroot: ""
  directory: "$work"
  pidfile: "$work/unbound.pid"
  access-control: 127.0.0.0/8 allow
  do-not-query-localhost: no
  verbosity: 0
  local-zone: "lab.test." static
  local-data: "nas.lab.test. 300 IN A 10.0.20.10"
forward-zone:
  name: "."
  forward-addr: 127.0.0.1@$SILENT
EOF
echo "10.0.20.10 nas.lab.test" > "$work/dnsmasq.hosts"

port_of() { case $1 in labgate) echo 15401 ;; base) echo 15401 ;; unbound) echo 15402 ;; dnsmasq) echo 15403 ;; esac; }

start() {
  case $1 in
    labgate) LABGATE_LOG=warn taskset -c 0 target/release/labgate run --config "$work/labgate.toml" --state-dir "$work/state" >/dev/null 2>&1 & ;;
    base) LABGATE_LOG=warn taskset -c 0 "$BASE" run --config "$work/labgate.toml" --state-dir "$work/state" >/dev/null 2>&1 & ;;
    unbound) taskset -c 0 unbound -d -c "$work/unbound.conf" >/dev/null 2>&1 & ;;
    dnsmasq) taskset -c 0 dnsmasq -k -p 15403 --listen-address=127.0.0.1 --bind-interfaces --no-resolv --no-hosts \
               --addn-hosts="$work/dnsmasq.hosts" --local=/lab.test/ --server=127.0.0.1#$SILENT \
               --cache-size=10000 --user=root >/dev/null 2>&1 & ;;
  esac
  pid=$!
  for _ in $(seq 1 100); do
    if dig @127.0.0.1 -p "$(port_of $1)" +time=1 +tries=1 +short nas.lab.test | grep -q 10.0.20.10; then
      for p in $(pids_of $pid); do taskset -a -p -c 0 "$p" >/dev/null; done
      # Answering is not done starting (labgate makes its local CA's key then): the flood
      # starts once half a second passes without CPU time.
      local before after
      for _ in $(seq 1 20); do
        before=$(cpu_ticks "$(pids_of $pid)"); sleep 0.5; after=$(cpu_ticks "$(pids_of $pid)")
        [ "$before" = "$after" ] && break
      done
      return 0
    fi
    sleep 0.1
  done
  echo "$1 did not start"; exit 1
}

# The upstream gone dark: reads every query, answers none.
taskset -c 1 python3 -c "
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(('127.0.0.1', $SILENT))
while True:
    s.recv(4096)
" &

printf '%-8s %9s %9s %9s %10s %9s %9s %10s %10s %9s\n' server "idle MiB" "peak MiB" "bound" "internal" "p50 ms" "p99 ms" answered lost "us/answer"
for server in $SERVERS; do
  start "$server"
  port=$(port_of "$server")
  pids=$(pids_of "$pid")
  idle=$(rss_kib "$pids")
  cpu0=$(cpu_ticks "$pids")
  # The prober first (its start-up would stall dnsperf); dnsperf with large socket buffers, so
  # that a burst of answers it is slow to read is not lost on its side.
  taskset -c 1 python3 benches/load/probe.py "$port" nas.lab.test 10.0.20.10 "$DURATION" > "$work/probe.$server" &
  probe=$!
  taskset -c 1 dnsperf -s 127.0.0.1 -p "$port" -d "$work/names" -c "$CLIENTS" -q "$OUTSTANDING" -Q "$RATE" \
    -l "$DURATION" -b 4096 > "$work/dnsperf.$server" 2>&1 &
  perf=$!
  peak=$idle
  while kill -0 $perf 2>/dev/null; do
    now=$(rss_kib "$pids"); [ "$now" -gt "$peak" ] && peak=$now
    sleep 0.2
  done
  wait $probe || true
  cpu1=$(cpu_ticks "$pids")
  kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
  read -r ok asked p50 p99 < "$work/probe.$server"
  completed=$(awk '/Queries completed:/ {print $3}' "$work/dnsperf.$server")
  lost=$(awk '/Queries lost:/ {print $3}' "$work/dnsperf.$server")
  ticks=$(getconf CLK_TCK)
  us=$(awk -v c=$((cpu1 - cpu0)) -v t="$ticks" -v n="${completed:-0}" 'BEGIN {printf "%.1f", n ? c / t * 1e6 / n : 0}')
  printf '%-8s %9.1f %9.1f %9.1f %5s/%-4s %9s %9s %10s %10s %9s\n' "$server" "$(echo "$idle / 1024" | bc -l)" \
    "$(echo "$peak / 1024" | bc -l)" "$(echo "(2 * $idle + 16384) / 1024" | bc -l)" "$ok" "$asked" "$p50" "$p99" \
    "${completed:-?}" "${lost:-?}" "$us"
done
echo "flood: ${RATE} q/s of never-repeated names for ${DURATION} s from ${CLIENTS} dnsperf clients; silent upstream; internal name every 50 ms"
