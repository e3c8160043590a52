#!/usr/bin/env bash
# DNS load benchmark: labgate against Knot DNS, NSD, Unbound and dnsmasq answering the same
# 200 internal names (one view), side by side in alternating rounds. Each server (all its
# processes and threads) is pinned to CPU 0, dnsperf to CPU 1. Reports queries per second,
# server CPU microseconds per query (utime+stime from /proc over the run: the figure that
# survives a noisy machine), then p50/p99 latency at a fixed rate (RATE q/s, default 10k, from
# dnsperf -v's per-query times, in one-second slices that rotate over the servers, which all
# run for the whole round), medians over rounds, and each server's idle RSS after start.
#
#   benches/load/dns.sh                 # 3 rounds x 8 s, release build
#   ROUNDS=5 DURATION=10 SERVERS="labgate knot" benches/load/dns.sh
#   VIEWS=2 benches/load/dns.sh         # split horizon: the same names answered differently
#                                       # to 127.0.0.1 and 127.0.0.2, half the load from each
#                                       # (labgate, Knot's mod-geoip in subnet mode and
#                                       # Unbound's access-control-view)
#   WORKLOAD=cache benches/load/dns.sh  # cache hits: 200 forwarded names (labgate, Unbound,
#                                       # dnsmasq, dnsdist with its packet cache), the upstream
#                                       # (NSD on CPU 1) stopped after a warm-up, so a miss
#                                       # would show as a lost query or SERVFAIL
#   BASE=/tmp/labgate-old SERVERS="labgate base unbound" benches/load/dns.sh
#                                       # another labgate build ("base") beside this one
#   SERVERS="labgate nolog" RATE=5000 benches/load/dns.sh
#                                       # the query log's cost: "nolog" is the same build with
#                                       # `[query_log] enabled = false` (labgate logs every
#                                       # query, as by default); "CPU us/q at RATE" is each
#                                       # server's CPU over its fixed-rate slices per query
#   SERVERS="nolog tap" RATE=5000 benches/load/dns.sh
#                                       # dnstap's cost: "tap" is "nolog" streaming every
#                                       # query and response to fstrm_capture (libfstrm's
#                                       # collector, on the load generator's CPU, writing to
#                                       # /dev/null) over a Unix socket
#   PERF=/tmp/dns benches/load/dns.sh   # also perf record each server's throughput run
#   STAT=/tmp/dns benches/load/dns.sh   # also count its system calls and context switches
#
# "echo" (target/release/dns-echo) is the ceiling: batched UDP I/O that does no DNS work.
# "vs echo" is the share of that ceiling a server reaches; "vs best peer" compares with the
# cheapest of the other servers (the echo aside) in each round.
#
# Needs: dnsperf, knot, nsd, unbound, dnsmasq (apt-get install dnsperf knot nsd unbound
# dnsmasq-base; knot-module-geoip for VIEWS=2, dnsdist for WORKLOAD=cache).
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=benches/load/lib.sh
source benches/load/lib.sh
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8}
# Seconds of the same load before each measured throughput run (as in http.sh, where the
# first server measured after a fresh start came out up to 15 % dearer).
WARMUP=${WARMUP:-2}
RATE=${RATE:-10000}
NAMES=200
VIEWS=${VIEWS:-1}
WORKLOAD=${WORKLOAD:-internal}
if [ "$WORKLOAD" = cache ]; then
  SERVERS=${SERVERS:-"labgate unbound dnsmasq dnsdist echo"}
  command -v dnsdist >/dev/null || { echo "missing dnsdist: apt-get install dnsdist"; exit 1; }
elif [ "$VIEWS" = 2 ]; then
  SERVERS=${SERVERS:-"labgate knot unbound echo"}
else
  SERVERS=${SERVERS:-"labgate knot nsd unbound dnsmasq echo"}
fi
for cmd in dnsperf knotd nsd unbound dnsmasq taskset; do
  command -v "$cmd" >/dev/null || { echo "missing $cmd: apt-get install dnsperf knot nsd unbound dnsmasq-base util-linux"; exit 1; }
done
[ -x target/release/labgate ] || cargo build --release --bin labgate
[[ " $SERVERS " = *" base "* ]] && [ ! -x "${BASE:-}" ] && { echo "BASE=<labgate binary> is needed for the server 'base'"; exit 1; }
[[ " $SERVERS " = *" echo "* ]] && { [ -x target/release/dns-echo ] || cargo build --release -p labgate-benches --bin dns-echo; }
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

# The same data for every server: view a (127.0.0.1, or everyone with VIEWS=1) gets
# 10.0.x.y, view b (127.0.0.2) 10.1.x.y.
{
  printf '[listen]\ndns = ["127.0.0.1:15301"]\nadmin = "127.0.0.1:15311"\nhttps = []\nhttp = []\n\n'
  [ "$WORKLOAD" = cache ] && printf '[dns]\nupstreams = ["udp://127.0.0.1:15310"]\n\n'
  if [ "$VIEWS" = 2 ]; then
    printf '[[network]]\nname = "a"\ncidrs = ["127.0.0.1/32"]\naddresses = ["127.0.0.1"]\n\n'
    printf '[[network]]\nname = "b"\ncidrs = ["127.0.0.2/32"]\naddresses = ["127.0.0.2"]\n\n'
  else
    printf '[[network]]\nname = "a"\ncidrs = ["127.0.0.0/8"]\naddresses = ["127.0.0.1"]\n\n'
  fi
  printf '[[zone]]\nname = "bench.test"\n\n'
  for i in $(seq 1 $NAMES); do
    printf '[[record]]\nname = "host%03d.bench.test"\ntype = "A"\nvalue = "10.0.%d.%d"\nnetworks = ["a"]\n\n' "$i" $((i / 250)) $((i % 250))
    [ "$VIEWS" = 2 ] && printf '[[record]]\nname = "host%03d.bench.test"\ntype = "A"\nvalue = "10.1.%d.%d"\nnetworks = ["b"]\n\n' "$i" $((i / 250)) $((i % 250))
  done
} > "$work/labgate.toml"
sed 's/127.0.0.1:15301/127.0.0.1:15308/; s/127.0.0.1:15311/127.0.0.1:0/' "$work/labgate.toml" > "$work/base.toml"
{ sed 's/127.0.0.1:15301/127.0.0.1:15309/; s/127.0.0.1:15311/127.0.0.1:0/' "$work/labgate.toml"; printf '\n[query_log]\nenabled = false\n'; } > "$work/nolog.toml"
{ sed 's/127.0.0.1:15301/127.0.0.1:15312/; s/127.0.0.1:15311/127.0.0.1:15313/' "$work/labgate.toml"; printf '\n[query_log]\nenabled = false\n\n[dnstap]\nsocket = "%s/tap.sock"\n' "$work"; } > "$work/tap.toml"
if [[ " $SERVERS " = *" tap "* ]]; then
  command -v fstrm_capture >/dev/null || { echo "missing fstrm_capture: apt-get install fstrm-bin"; exit 1; }
  taskset -c 1 fstrm_capture -t protobuf:dnstap.Dnstap -u "$work/tap.sock" -w /dev/null >/dev/null 2>&1 &
fi
unbound_data() { # view prefix
  printf '  local-zone: "bench.test." static\n'
  for i in $(seq 1 $NAMES); do
    printf '  local-data: "host%03d.bench.test. 300 IN A %s.%d.%d"\n' "$i" "$1" $((i / 250)) $((i % 250))
  done
}
{
  printf 'server:\n  interface: 127.0.0.1\n  port: 15302\n  num-threads: 1\n  do-daemonize: no\n  use-syslog: no\n'
  printf '  username: ""\n  chroot: ""\n  directory: "%s"\n  pidfile: "%s/unbound.pid"\n' "$work" "$work"
  printf '  access-control: 127.0.0.0/8 allow\n  verbosity: 0\n'
  if [ "$VIEWS" = 2 ]; then
    printf '  access-control-view: 127.0.0.1/32 a\n  access-control-view: 127.0.0.2/32 b\n'
    printf 'view:\n  name: "a"\n'; unbound_data 10.0
    printf 'view:\n  name: "b"\n'; unbound_data 10.1
  else
    unbound_data 10.0
  fi
  if [ "$WORKLOAD" = cache ]; then
    # Unbound keeps RFC 6761's test. local by default.
    printf '  do-not-query-localhost: no\n  local-zone: "test." nodefault\n'
    printf 'forward-zone:\n  name: "."\n  forward-addr: 127.0.0.1@15310\n'
  fi
  printf 'remote-control:\n  control-enable: no\n'
} > "$work/unbound.conf"
{
  printf '$ORIGIN bench.test.\n$TTL 300\n@ IN SOA ns.bench.test. hostmaster.bench.test. 1 3600 600 86400 60\n'
  printf '@ IN NS ns.bench.test.\nns IN A 127.0.0.1\n'
  for i in $(seq 1 $NAMES); do
    printf 'host%03d IN A 10.0.%d.%d\n' "$i" $((i / 250)) $((i % 250))
  done
} > "$work/bench.test.zone"
cat > "$work/nsd.conf" <<EOF
server:
  ip-address: 127.0.0.1@15304
  server-count: 1
  username: ""
  chroot: ""
  zonesdir: "$work"
  pidfile: "$work/nsd.pid"
  zonelistfile: "$work/zone.list"
  xfrdfile: "$work/xfrd.state"
  xfrdir: "$work"
  database: ""
  verbosity: 0
  hide-version: yes
  rrl-ratelimit: 0
  rrl-whitelist-ratelimit: 0
remote-control:
  control-enable: no
zone:
  name: bench.test
  zonefile: bench.test.zone
EOF
mkdir -p "$work/knotdb"
# Knot's split horizon: mod-geoip in subnet mode, one entry per name and view.
for i in $(seq 1 $NAMES); do
  printf 'host%03d.bench.test:\n  - net: 127.0.0.1/32\n    A: 10.0.%d.%d\n  - net: 127.0.0.2/32\n    A: 10.1.%d.%d\n' \
    "$i" $((i / 250)) $((i % 250)) $((i / 250)) $((i % 250))
done > "$work/geo.conf"
cat > "$work/knot.conf" <<EOF
server:
  listen: 127.0.0.1@15305
  rundir: "$work"
  udp-workers: 1
  tcp-workers: 1
  background-workers: 1
database:
  storage: "$work/knotdb"
template:
  - id: default
    storage: "$work"
    file: "%s.zone"
    semantic-checks: off
$(if [ "$VIEWS" = 2 ]; then
  printf 'mod-geoip:\n  - id: split\n    config-file: "%s/geo.conf"\n    mode: subnet\n    ttl: 300\n' "$work"
  printf 'zone:\n  - domain: bench.test\n    module: mod-geoip/split\n'
else
  printf 'zone:\n  - domain: bench.test\n'
fi)
log:
  - target: stderr
    any: error
EOF
: > "$work/dnsmasq.hosts"
for i in $(seq 1 $NAMES); do
  printf '10.0.%d.%d host%03d.bench.test\n' $((i / 250)) $((i % 250)) "$i" >> "$work/dnsmasq.hosts"
done

# The cache workload's upstream: NSD on CPU 1 with 200 public-looking names (TTL 3600: no
# answer expires during a run), and the caches in front of it.
mkdir -p "$work/up"
{
  printf '$ORIGIN cached.test.\n$TTL 3600\n@ IN SOA ns.cached.test. hostmaster.cached.test. 1 3600 600 86400 3600\n'
  printf '@ IN NS ns.cached.test.\nns IN A 198.51.100.1\n'
  for i in $(seq 1 $NAMES); do printf 'name%03d IN A 198.51.%d.%d\n' "$i" $((i / 250)) $((i % 250)); done
} > "$work/up/cached.test.zone"
sed -e "s|$work|$work/up|g" -e 's/@15304/@15310/' -e 's/name: bench.test/name: cached.test/' \
  -e 's/zonefile: bench.test.zone/zonefile: cached.test.zone/' "$work/nsd.conf" > "$work/up/nsd.conf"
cat > "$work/dnsdist.conf" <<EOF
setLocal("127.0.0.1:15306")
setACL({"127.0.0.0/8"})
-- Always up: a miss after the upstream is stopped must show as a lost query.
newServer({address="127.0.0.1:15310"}):setUp()
getPool(""):setCache(newPacketCache(10000))
EOF
if [ "$WORKLOAD" = cache ]; then
  probe=name001.cached.test probe_addr=198.51.0.1
  for i in $(seq 1 $NAMES); do printf 'name%03d.cached.test A\n' "$i"; done > "$work/queries"
else
  probe=host001.bench.test probe_addr=10.0.0.1
  for i in $(seq 1 $NAMES); do printf 'host%03d.bench.test A\n' "$i"; done > "$work/queries"
fi
upstream=
start_upstream() {
  taskset -c 1 nsd -d -c "$work/up/nsd.conf" >/dev/null 2>&1 &
  upstream=$!
  for _ in $(seq 1 100); do
    dig @127.0.0.1 -p 15310 +time=1 +tries=1 +short $probe | grep -q "$probe_addr" && return 0
    sleep 0.1
  done
  echo "the upstream did not start"; exit 1
}
stop_upstream() { kill $(pids_of $upstream) 2>/dev/null || true; wait $upstream 2>/dev/null || true; }

port_of() {
  case $1 in labgate) echo 15301 ;; unbound) echo 15302 ;; dnsmasq) echo 15303 ;; nsd) echo 15304 ;;
    knot) echo 15305 ;; dnsdist) echo 15306 ;; echo) echo 15307 ;; base) echo 15308 ;; nolog) echo 15309 ;;
    tap) echo 15312 ;; esac
}

start() {
  port=$(port_of $1)
  case $1 in
    labgate) LABGATE_LOG=warn taskset -c 0 target/release/labgate run --config "$work/labgate.toml" --state-dir "$work/state" >/dev/null 2>&1 & ;;
    base) LABGATE_LOG=warn taskset -c 0 "$BASE" run --config "$work/base.toml" --state-dir "$work/base-state" >/dev/null 2>&1 & ;;
    nolog) LABGATE_LOG=warn taskset -c 0 target/release/labgate run --config "$work/nolog.toml" --state-dir "$work/nolog-state" >/dev/null 2>&1 & ;;
    tap) LABGATE_LOG=warn taskset -c 0 target/release/labgate run --config "$work/tap.toml" --state-dir "$work/tap-state" >/dev/null 2>&1 & ;;
    unbound) taskset -c 0 unbound -d -c "$work/unbound.conf" >/dev/null 2>&1 & ;;
    dnsmasq) taskset -c 0 dnsmasq -k -p 15303 --listen-address=127.0.0.1 --bind-interfaces --no-resolv --no-hosts \
               --addn-hosts="$work/dnsmasq.hosts" --local=/bench.test/ --server=127.0.0.1#15310 \
               --cache-size=10000 --user=root >/dev/null 2>&1 & ;;
    dnsdist) taskset -c 0 dnsdist --supervised --disable-syslog -C "$work/dnsdist.conf" >/dev/null 2>&1 & ;;
    nsd) taskset -c 0 nsd -d -c "$work/nsd.conf" >/dev/null 2>&1 & ;;
    knot) taskset -c 0 knotd -c "$work/knot.conf" >/dev/null 2>&1 & ;;
    echo) taskset -c 0 target/release/dns-echo 127.0.0.1:15307 & ;;
  esac
  pid=$!
  for _ in $(seq 1 100); do
    # The echo answers nothing, but it answers.
    if [ "$1" = echo ] && dig @127.0.0.1 -p $port +time=1 +tries=1 +noedns $probe | grep -q 'status: NOERROR' ||
       dig @127.0.0.1 -p $port +time=1 +tries=1 +short $probe | grep -q "$probe_addr"; then
      # Knot pins its UDP workers itself (worker 0 on the load generator's CPU): re-pin
      # every thread of every process of the server to CPU 0.
      for p in $(pids_of $pid); do taskset -a -p -c 0 "$p" >/dev/null; done
      if [ "$VIEWS" = 2 ] && [ "$1" != echo ] && ! dig @127.0.0.1 -p $port -b 127.0.0.2 +time=1 +tries=1 +short host001.bench.test | grep -q 10.1.0.1; then
        echo "$1 does not answer 127.0.0.2 from its own view"; exit 1
      fi
      return 0
    fi
    sleep 0.1
  done
  echo "$1 did not start"; exit 1
}


# dnsperf -v's per-query latencies (seconds) as microseconds, one per line.
latencies() { awk '/^> / {print $NF * 1e6}'; }
# p50 and p99 of the numbers in a file.
percentiles() { sort -g "$1" | awk '{a[NR]=$1} END { if (NR) printf "%.0f %.0f\n", a[int(NR*0.5)+1], a[int(NR*0.99)+1]; else print "- -" }'; }

declare -A qps cpu rss p50 p99 round_cpu started rate_cpu
for round in $(seq 1 "$ROUNDS"); do
  # Every server runs for the whole round. The throughput runs take turns; the latency runs
  # are cut into one-second slices that rotate over the servers, so that the host's stalls,
  # which decide a p99 here, fall on every server alike.
  [ "$WORKLOAD" = cache ] && start_upstream
  for server in $SERVERS; do
    start $server
    started[$server]=$pid
    if [ "$WORKLOAD" = cache ]; then
      # Every name asked three times (labgate: a miss, a general-path hit, then fast-path
      # hits); then the upstream goes, and anything not answered from a cache is lost.
      taskset -c 1 dnsperf -s 127.0.0.1 -p $port -d "$work/queries" -n 3 -c 1 -q 10 >/dev/null 2>&1
    fi
  done
  [ "$WORKLOAD" = cache ] && stop_upstream
  # The throughput runs take turns in an order that rotates each round: none is always first.
  read -ra order <<<"$SERVERS"
  shift_by=$(( (round - 1) % ${#order[@]} ))
  order=("${order[@]:shift_by}" "${order[@]:0:shift_by}")
  for server in "${order[@]}"; do
    port=$(port_of $server)
    procs=$(pids_of ${started[$server]})
    rss[$server]=$(rss_kib "$procs")
    if [ "$WARMUP" -gt 0 ]; then
      if [ "$VIEWS" = 2 ]; then
        taskset -c 1 dnsperf -s 127.0.0.1 -a 127.0.0.2 -p $port -d "$work/queries" -c 5 -T 1 -q 50 -l "$WARMUP" >/dev/null 2>&1 &
        other=$!
        taskset -c 1 dnsperf -s 127.0.0.1 -a 127.0.0.1 -p $port -d "$work/queries" -c 5 -T 1 -q 50 -l "$WARMUP" >/dev/null 2>&1
        wait $other
      else
        taskset -c 1 dnsperf -s 127.0.0.1 -p $port -d "$work/queries" -c 10 -T 1 -q 100 -l "$WARMUP" >/dev/null 2>&1
      fi
    fi
    before=$(cpu_ticks "$procs")
    # PERF=prefix: a profile of the server during the throughput run, in prefix.server.round.
    if [ -n "${PERF:-}" ]; then
      perf record -F 999 -g -o "$PERF.$server.$round" -p "$(echo $procs | tr ' ' ,)" -- sleep $((DURATION - 1)) >/dev/null 2>&1 &
    fi
    if [ -n "${STAT:-}" ]; then
      perf stat -e raw_syscalls:sys_enter,context-switches -p "$(echo $procs | tr ' ' ,)" -o "$STAT.$server.$round" -- sleep $((DURATION - 1)) &
    fi
    if [ "$VIEWS" = 2 ]; then
      # Half the clients from each view's address, at once; their figures add up.
      taskset -c 1 dnsperf -s 127.0.0.1 -a 127.0.0.2 -p $port -d "$work/queries" -c 5 -T 1 -q 50 -l "$DURATION" >"$work/b.out" 2>&1 &
      other=$!
      a=$(taskset -c 1 dnsperf -s 127.0.0.1 -a 127.0.0.1 -p $port -d "$work/queries" -c 5 -T 1 -q 50 -l "$DURATION" 2>&1)
      wait $other
      out=$(printf '%s\n%s\n' "$a" "$(cat "$work/b.out")" | awk '
        /Queries completed/ {c += $3} /Queries lost/ {l += $3} /Queries per second/ {r += $4}
        END { printf "  Queries completed: %d\n  Queries lost: %d\n  Queries per second: %f\n", c, l, r }')
    else
      out=$(taskset -c 1 dnsperf -s 127.0.0.1 -p $port -d "$work/queries" -c 10 -T 1 -q 100 -l "$DURATION" 2>&1)
    fi
    after=$(cpu_ticks "$procs")
    if [ "$WORKLOAD" = cache ] && ! echo "$out" | grep -q 'NOERROR .*(100.00%)'; then
      echo "$server: not every answer was a NOERROR cache hit:"; echo "$out" | grep -A3 'Response codes'
    fi
    done_q=$(echo "$out" | awk '/Queries completed/ {print $3}')
    lost=$(echo "$out" | awk '/Queries lost/ {print $3}')
    rate=$(echo "$out" | awk '/Queries per second/ {print $4}')
    us=$(awk -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" -v q="$done_q" 'BEGIN { printf "%.2f", t / hz * 1e6 / q }')
    echo "round $round $server: $rate q/s, $us us CPU/query, completed $done_q, lost $lost"
    qps[$server]+="$rate "
    cpu[$server]+="$us "
    round_cpu[$server.$round]=$us
  done
  declare -A slice_ns=()
  for _ in $(seq 1 "$DURATION"); do
    for server in $SERVERS; do
      procs=$(pids_of ${started[$server]})
      before=$(cpu_ns "$procs")
      taskset -c 1 dnsperf -s 127.0.0.1 -p "$(port_of $server)" -d "$work/queries" -Q "$RATE" -l 1 -v 2>&1 | latencies >>"$work/latency.$server.$round"
      slice_ns[$server]=$(( ${slice_ns[$server]:-0} + $(cpu_ns "$procs") - before ))
    done
  done
  for server in $SERVERS; do
    read -r l50 l99 < <(percentiles "$work/latency.$server.$round")
    answered=$(wc -l <"$work/latency.$server.$round")
    at_rate=$(awk -v ns="${slice_ns[$server]}" -v q="$answered" 'BEGIN { if (q) printf "%.2f", ns / 1000 / q; else print "-" }')
    rate_cpu[$server]+="$at_rate "
    echo "round $round $server: at $RATE q/s p50 $l50 us, p99 $l99 us, $at_rate us CPU/query"
    p50[$server]+="$l50 "
    p99[$server]+="$l99 "
    if [ "$server" = labgate ]; then
      # What the query log kept and dropped over the round (the whole round's load).
      echo "round $round labgate: query log $(curl -s http://127.0.0.1:15311/metrics | awk '/^labgate_querylog_(written|dropped)_total/ {printf "%s %s  ", $1, $2}')"
    fi
    if [ "$server" = tap ]; then
      echo "round $round tap: dnstap $(curl -s http://127.0.0.1:15313/metrics | awk '/^labgate_dnstap_(sent|dropped)_total/ {printf "%s %s  ", $1, $2}')"
    fi
    pid=${started[$server]}
    kill $(pids_of $pid) 2>/dev/null || true
    wait $pid 2>/dev/null || true
  done
done

# Capacity against references: per round, the cheapest reference's CPU per query divided by
# the server's in that round; the median over rounds (runs of one round are seconds apart;
# rounds are minutes apart, and this host drifts).
paired() { # server "reference..."
  for round in $(seq 1 "$ROUNDS"); do
    best=$(for r in $2; do echo "${round_cpu[$r.$round]:-}"; done | grep -v '^$' | sort -g | head -1)
    awk -v a="${round_cpu[$1.$round]:-0}" -v b="${best:-0}" 'BEGIN { if (a > 0 && b > 0) printf "%.4f\n", b / a }'
  done | median | awk '{ if ($1 > 0) printf "%.2fx", $1; else print "-" }'
}
# The peers: every server but labgate and the echo.
peers=$(for s in $SERVERS; do case $s in labgate|base|nolog|echo) ;; *) printf '%s ' $s ;; esac; done)

echo
echo "capacity: CPU per query against Unbound's, the best peer's ($peers) and the no-work echo's, paired per round"
printf '%-8s %12s %16s %12s %14s %10s %10s %10s %18s %14s\n' server "q/s median" "CPU us/q median" "vs Unbound" "vs best peer" "vs echo" "p50 us" "p99 us" "CPU us/q at $RATE" "idle RSS KiB"
for server in $SERVERS; do
  printf '%-8s %12.0f %16s %12s %14s %10s %10s %10s %18s %14s\n' $server "$(echo "${qps[$server]}" | median)" \
    "$(echo "${cpu[$server]}" | median)" "$(paired $server unbound)" "$(paired $server "$peers")" "$(paired $server echo)" \
    "$(echo "${p50[$server]}" | median)" "$(echo "${p99[$server]}" | median)" "$(echo "${rate_cpu[$server]}" | median)" "${rss[$server]}"
done
