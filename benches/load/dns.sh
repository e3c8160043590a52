#!/usr/bin/env bash
# DNS load benchmark: labgate against Unbound and dnsmasq answering the same 200 internal
# names, side by side in alternating rounds. Each server is pinned to CPU 0, dnsperf to CPU 1.
# Reports queries per second and server CPU microseconds per query (utime+stime from
# /proc/PID/stat over the run: the figure that survives a noisy machine), medians over rounds.
#
#   benches/load/dns.sh                 # 3 rounds x 8 s, release build
#   ROUNDS=5 DURATION=10 benches/load/dns.sh
#
# Needs: dnsperf, unbound, dnsmasq (apt-get install dnsperf unbound dnsmasq-base).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8}
NAMES=200
for cmd in dnsperf unbound dnsmasq taskset; do
  command -v "$cmd" >/dev/null || { echo "missing $cmd: apt-get install dnsperf unbound dnsmasq-base util-linux"; exit 1; }
done
[ -x target/release/labgate ] || cargo build --release --bin labgate
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

# The same data for every server.
{
  printf '[listen]\ndns = ["127.0.0.1:15301"]\nadmin = "127.0.0.1:0"\n\n'
  printf '[[network]]\nname = "lab"\ncidrs = ["127.0.0.0/8"]\naddresses = ["127.0.0.1"]\n\n'
  printf '[[zone]]\nname = "bench.test"\n\n'
  for i in $(seq 1 $NAMES); do
    printf '[[record]]\nname = "host%03d.bench.test"\ntype = "A"\nvalue = "10.0.%d.%d"\n\n' "$i" $((i / 250)) $((i % 250))
  done
} > "$work/labgate.toml"
{
  printf 'server:\n  interface: 127.0.0.1\n  port: 15302\n  num-threads: 1\n  do-daemonize: no\n  use-syslog: no\n'
  printf '  username: ""\n  chroot: ""\n  directory: "%s"\n  pidfile: "%s/unbound.pid"\n' "$work" "$work"
  printf '  access-control: 127.0.0.0/8 allow\n  verbosity: 0\n  local-zone: "bench.test." static\n'
  for i in $(seq 1 $NAMES); do
    printf '  local-data: "host%03d.bench.test. 300 IN A 10.0.%d.%d"\n' "$i" $((i / 250)) $((i % 250))
  done
  printf 'remote-control:\n  control-enable: no\n'
} > "$work/unbound.conf"
: > "$work/dnsmasq.hosts"
for i in $(seq 1 $NAMES); do
  printf '10.0.%d.%d host%03d.bench.test\n' $((i / 250)) $((i % 250)) "$i" >> "$work/dnsmasq.hosts"
  printf 'host%03d.bench.test A\n' "$i" >> "$work/queries"
done

start() {
  case $1 in
    labgate) LABGATE_LOG=warn taskset -c 0 target/release/labgate run --config "$work/labgate.toml" --state-dir "$work/state" >/dev/null 2>&1 & port=15301 ;;
    unbound) taskset -c 0 unbound -d -c "$work/unbound.conf" >/dev/null 2>&1 & port=15302 ;;
    dnsmasq) taskset -c 0 dnsmasq -k -p 15303 --listen-address=127.0.0.1 --bind-interfaces --no-resolv --no-hosts \
               --addn-hosts="$work/dnsmasq.hosts" --local=/bench.test/ --cache-size=1000 --user=root >/dev/null 2>&1 & port=15303 ;;
  esac
  pid=$!
  for _ in $(seq 1 100); do
    dig @127.0.0.1 -p $port +time=1 +tries=1 +short host001.bench.test | grep -q 10.0.0.1 && return 0
    sleep 0.1
  done
  echo "$1 did not start"; exit 1
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

declare -A qps cpu
for round in $(seq 1 "$ROUNDS"); do
  for server in labgate unbound dnsmasq; do
    start $server
    before=$(cpu_ticks $pid)
    out=$(taskset -c 1 dnsperf -s 127.0.0.1 -p $port -d "$work/queries" -c 10 -T 1 -q 100 -l "$DURATION" 2>&1)
    after=$(cpu_ticks $pid)
    kill $pid; wait $pid 2>/dev/null || true
    done_q=$(echo "$out" | awk '/Queries completed/ {print $3}')
    lost=$(echo "$out" | awk '/Queries lost/ {print $3}')
    rate=$(echo "$out" | awk '/Queries per second/ {print $4}')
    ticks=$(getconf CLK_TCK)
    us=$(awk -v t=$((after - before)) -v hz="$ticks" -v q="$done_q" 'BEGIN { printf "%.2f", t / hz * 1e6 / q }')
    echo "round $round $server: $rate q/s, $us us CPU/query, completed $done_q, lost $lost"
    qps[$server]+="$rate "
    cpu[$server]+="$us "
  done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
echo
printf '%-8s %12s %16s %18s\n' server "q/s median" "CPU us/q median" "CPU vs Unbound"
ucpu=$(echo "${cpu[unbound]}" | median)
for server in labgate unbound dnsmasq; do
  q=$(echo "${qps[$server]}" | median)
  c=$(echo "${cpu[$server]}" | median)
  printf '%-8s %12s %16s %17.2fx\n' $server "$q" "$c" "$(awk -v a="$c" -v b="$ucpu" 'BEGIN {print a / b}')"
done
