#!/usr/bin/env bash
# HTTP load benchmark: labgate against nginx, HAProxy and Caddy as reverse proxies (plain
# HTTP and TLS-terminating) in front of the same nginx backend, side by side in alternating rounds. Every
# proxy gets one worker; the proxy and the backend are pinned to CPU 1, the load generator to
# CPU 0. Reports requests per second, p50/p99 (wrk --latency, closed loop at -c64) and the
# proxy's own CPU microseconds per request (utime+stime of its processes from /proc over
# the run, the figure that survives a noisy machine), medians over rounds, and nginx's CPU
# per request over the server's (>1: cheaper than nginx), paired per round and workload (the
# servers take turns within a workload) and the median of those ratios taken.
#
# Workloads: http-1k and http-100k (plain HTTP/1.1 keep-alive, wrk), tls-1k and tls-100k
# (HTTPS keep-alive, wrk), handshake (a new TLS 1.3 connection per request, wrk with
# Connection: close: its latency starts after the handshake), connect and connect-c64 (the
# same, timed from the TCP connect to the response's last byte by benches' tls-connect: at a
# fixed RATE, each connection timed from when it was due, and 64 at a time as wrk), h2-1k
# and h2-100k (h2load -c16 -m16: few connections, many streams), h2-1k-c64 (h2load -c64
# -m1: browser-like, many connections with few streams each; h2 latency percentiles come
# from h2load's per-request log); and, when asked for, http-close (a new plain HTTP
# connection per request). IDLE_H2=N adds the memory of N idle HTTP/2 connections per
# server (benches/load/idle.py --h2, two batches) after the rounds.
#
#   benches/load/http.sh                       # 3 rounds x 8 s, release build
#   ROUNDS=5 DURATION=10 WORKLOADS="tls-1k h2-1k" benches/load/http.sh
#   BASE=/tmp/labgate-old SERVERS="labgate base nginx" benches/load/http.sh
#                                              # "base" is another labgate binary on the
#                                              # same config: a change measured against it
#   LABGATE_LOG=warn,labgate::access=info SERVERS="labgate noaccess" benches/load/http.sh
#                                              # the access log's cost: "noaccess" is the
#                                              # same build with `[server] access_log =
#                                              # false`; the filter lets labgate write
#                                              # every request's line (to a file here), as
#                                              # by default (the default filter here, warn,
#                                              # drops them as nginx's `access_log off`)
#   TOGETHER=1 SERVERS="labgate nginx" benches/load/http.sh
#                                              # the servers of a workload loaded at once
#                                              # (one wrk each, all on CPU 0), so their CPU
#                                              # per request comes from the same seconds of
#                                              # this host's drift; req/s and latency are
#                                              # then those of a shared core
#   PERF=/tmp/p WORKLOADS=h2-1k benches/load/http.sh
#                                              # a perf profile of each server's measured
#                                              # run: /tmp/p.<server>.<workload>.<round>;
#                                              # STAT=/tmp/s: its system calls and context
#                                              # switches (perf stat) the same way
#
# Needs: nginx-light haproxy caddy wrk nghttp2-client openssl (apt-get install ...).
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=benches/load/lib.sh
source benches/load/lib.sh
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8}
# Seconds of the same load before each measured run: the first server measured after a
# fresh start came out up to 15 % dearer than the same server measured later in the round.
WARMUP=${WARMUP:-2}
WORKLOADS=${WORKLOADS:-"http-1k http-100k tls-1k tls-100k handshake connect connect-c64 h2-1k h2-1k-c64 h2-100k"}
SERVERS=${SERVERS:-"labgate nginx haproxy caddy"}
# New TLS connections a second in the connect workload: well below every proxy's capacity
# (at 1000/s nginx used 84 % of its core on 2026-11-30).
RATE=${RATE:-500}
for cmd in nginx haproxy caddy wrk h2load openssl taskset; do
  command -v "$cmd" >/dev/null || { echo "missing $cmd: apt-get install nginx-light haproxy caddy wrk nghttp2-client openssl util-linux"; exit 1; }
done
[ -x target/release/labgate ] || cargo build --release --bin labgate
[[ " $WORKLOADS " != *" connect"* ]] || [ -x target/release/tls-connect ] || cargo build --release -p labgate-benches --bin tls-connect
[[ " $SERVERS " != *" base "* ]] || [ -x "${BASE:-}" ] || { echo "SERVERS has base: set BASE to a labgate binary"; exit 1; }
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; pkill -f "$work" 2>/dev/null || true; rm -rf "$work"' EXIT
# nginx workers run as an unprivileged user: they must be able to read the files.
chmod 755 "$work"
# What the load generators write goes to "$work/out", below the configuration's directory:
# labgate watches that directory (not its subdirectories) for changes, and a log written
# beside its configuration would wake its watcher with every write, a cost no deployment has.
mkdir -p "$work/www" "$work/state" "$work/out"
head -c 1024 /dev/zero | tr '\0' x > "$work/www/1k"
head -c 102400 /dev/zero | tr '\0' x > "$work/www/100k"
HOST=app.bench.test
BACKEND=${BACKEND:-18080}

# One ECDSA P-256 certificate for every proxy, the nginx backend, labgate's configuration.
https_bench_files 18441 "[server]
# Every load generator here is one address (127.0.0.1), and idle.py holds 2000 connections.
max_connections = 100000
max_connections_per_address = 100000" "plain_http = true"
cat "$work/cert.pem" "$work/key.pem" > "$work/haproxy.pem"
# A base binary from before the connection bounds would refuse their keys: they go.
sed -e 's/:18441/:18445/' -e 's/:18451/:18455/' -e '/^\[server\]/d' -e '/^max_connections/d' \
  "$work/labgate.toml" >"$work/base.toml"
sed -e 's/:18441/:18446/' -e 's/:18451/:18456/' -e 's/^\[server\]$/[server]\naccess_log = false/' \
  "$work/labgate.toml" >"$work/noaccess.toml"
cat > "$work/nginx.conf" <<EOF
worker_processes 1; daemon off; pid $work/nginx.pid; error_log $work/nginx.err;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  upstream b { server 127.0.0.1:$BACKEND; keepalive 128; }
  server { listen 127.0.0.1:18442 ssl http2; listen 127.0.0.1:18452; server_name $HOST;
    ssl_certificate $work/cert.pem; ssl_certificate_key $work/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    location / { proxy_pass http://b; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_set_header Host \$host; proxy_set_header X-Forwarded-For \$remote_addr;
      proxy_set_header X-Forwarded-Proto \$scheme; } } }
EOF
cat > "$work/haproxy.cfg" <<EOF
global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  http-reuse always
frontend f
  bind 127.0.0.1:18443 ssl crt $work/haproxy.pem alpn h2,http/1.1
  bind 127.0.0.1:18453
  option forwardfor
  http-request set-header X-Forwarded-Proto https if { ssl_fc }
  http-request set-header X-Forwarded-Proto http unless { ssl_fc }
  default_backend b
backend b
  server s1 127.0.0.1:$BACKEND
EOF
cat > "$work/Caddyfile" <<EOF
{
  admin off
  auto_https off
  servers {
    protocols h1 h2
  }
}
https://$HOST:18444, https://127.0.0.1:18444 {
  bind 127.0.0.1
  tls $work/cert.pem $work/key.pem
  reverse_proxy 127.0.0.1:$BACKEND
}
http://$HOST:18454, http://127.0.0.1:18454 {
  bind 127.0.0.1
  reverse_proxy 127.0.0.1:$BACKEND
}
EOF

port_of() { case $1 in labgate) echo 18441 ;; nginx) echo 18442 ;; haproxy) echo 18443 ;; caddy) echo 18444 ;; base) echo 18445 ;; noaccess) echo 18446 ;; esac; }
# The plain-HTTP listener of each: the HTTPS port + 10.
plain_port_of() { echo $(($(port_of "$1") + 10)); }

start() {
  case $1 in
    labgate) LABGATE_LOG=${LABGATE_LOG:-warn} taskset -c 1 target/release/labgate run --config "$work/labgate.toml" --state-dir "$work/state" >"$work/labgate.log" 2>&1 & ;;
    base) mkdir -p "$work/base-state"; LABGATE_LOG=${LABGATE_LOG:-warn} taskset -c 1 "$BASE" run --config "$work/base.toml" --state-dir "$work/base-state" >"$work/base.log" 2>&1 & ;;
    noaccess) mkdir -p "$work/noaccess-state"; LABGATE_LOG=${LABGATE_LOG:-warn} taskset -c 1 target/release/labgate run --config "$work/noaccess.toml" --state-dir "$work/noaccess-state" >"$work/noaccess.log" 2>&1 & ;;
    nginx) taskset -c 1 nginx -c "$work/nginx.conf" -p "$work" >/dev/null 2>&1 & ;;
    haproxy) taskset -c 1 haproxy -f "$work/haproxy.cfg" -db >/dev/null 2>&1 & ;;
    caddy) GOMAXPROCS=1 HOME=$work XDG_DATA_HOME=$work XDG_CONFIG_HOME=$work taskset -c 1 caddy run --config "$work/Caddyfile" --adapter caddyfile >"$work/caddy.log" 2>&1 & ;;
  esac
  pid=$!
  local port; port=$(port_of "$1")
  for _ in $(seq 1 150); do
    curl -sk --resolve "$HOST:$port:127.0.0.1" "https://$HOST:$port/1k" 2>/dev/null | grep -q xxxx \
      && curl -s -H "Host: $HOST" "http://127.0.0.1:$(plain_port_of "$1")/1k" 2>/dev/null | grep -q xxxx && return 0
    sleep 0.1
  done
  echo "$1 did not start"; tail -5 "$work/$1.log" 2>/dev/null; exit 1
}


taskset -c 1 nginx -c "$work/backend.conf" -p "$work" >/dev/null 2>&1 &
backend_up() { curl -s "http://127.0.0.1:$BACKEND/1k" | grep -q xxxx; }
for _ in $(seq 1 50); do backend_up && break; sleep 0.1; done
backend_up || { echo "the nginx backend did not start: $(tail -3 "$work/backend.err")"; exit 1; }

# wrk's latency ("850.00us", "1.23ms", "1.02s") in milliseconds.
to_ms() { awk '{ v = $1; if (v ~ /us$/) { sub(/us$/, "", v); v /= 1000 } else if (v ~ /ms$/) { sub(/ms$/, "", v) } else if (v ~ /s$/) { sub(/s$/, "", v); v *= 1000 } else { v = "-" } print v }'; }

run_load() { # workload server -> "requests rps p50_ms p99_ms"
  local url="https://127.0.0.1:$(port_of "$2")"
  case $1 in http-*) url="http://127.0.0.1:$(plain_port_of "$2")" ;; esac
  case $1 in
    http-1k|http-100k|http-close|tls-1k|tls-100k|handshake)
      local path=/1k extra=()
      case $1 in *-100k) path=/100k ;; esac
      case $1 in handshake|http-close) extra=(-H "Connection: close") ;; esac
      out=$(taskset -c 0 wrk -t1 -c64 -d"${DURATION}s" --latency -H "Host: $HOST" "${extra[@]}" "$url$path" 2>&1)
      reqs=$(echo "$out" | awk '/requests in/ {print $1}')
      rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
      p50=$(echo "$out" | awk '$1=="50%" {print $2}' | to_ms)
      p99=$(echo "$out" | awk '$1=="99%" {print $2}' | to_ms)
      errs=$(echo "$out" | awk '/Non-2xx|Socket errors/' | tr '\n' ' ')
      [ -n "$errs" ] && echo "  ($1 errors: $errs)" >&2
      echo "$reqs $rps $p50 $p99" ;;
    connect|connect-c64)
      # The whole time of a new TLS connection: connect, handshake, request, response.
      local load=(--rate "$RATE")
      [ "$1" = connect-c64 ] && load=(--concurrency 64)
      out=$(taskset -c 0 target/release/tls-connect "127.0.0.1:$(port_of "$2")" "$HOST" /1k "${load[@]}" --duration "$DURATION" 2>&1)
      errs=$(echo "$out" | awk '$1 == "requests" && $4 > 0 { print $4 " errors" } /first error/')
      [ -n "$errs" ] && echo "  ($1 $2: $errs)" >&2
      echo "$out" | awk -v d="$DURATION" '$1 == "requests" { printf "%s %.0f %s %s\n", $2, $2 / d, $6, $8 }' ;;
    h2-*)
      local path=/1k load=(-c16 -m16)
      case $1 in *-100k) path=/100k ;; esac
      case $1 in *-c64) load=(-c64 -m1) ;; esac
      out=$(taskset -c 0 h2load "${load[@]}" -D "$DURATION" --log-file="$work/out/h2-$2.log" -H ":authority: $HOST" "$url$path" 2>&1)
      reqs=$(echo "$out" | awk '/^requests:/ {print $8}')
      rps=$(echo "$out" | awk '/^finished in/ {print $4}')
      errs=$(echo "$out" | awk '/^requests:/ && ($10 > 0 || $12 > 0) { print $10 " failed, " $12 " errored" }')
      [ -n "$errs" ] && echo "  ($1 $2: $errs)" >&2
      # The log's third column is each request's time in microseconds.
      read -r p50 p99 < <(awk '{ print $3 }' "$work/out/h2-$2.log" | sort -n | awk '{ v[NR] = $1 } END { if (NR) printf "%.3f %.3f\n", v[int(NR * 0.5) + 1] / 1000, v[int(NR * 0.99) + 1] / 1000; else print "- -" }')
      echo "$reqs $rps $p50 $p99" ;;
  esac
}

declare -A rps cpu p50 p99 ratio started last before after
for round in $(seq 1 "$ROUNDS"); do
  # Every server runs for the whole round (idle ones cost nothing measurable) so that the
  # servers take turns per workload: nginx and labgate run the same workload seconds apart,
  # and each round gives a paired ratio that the host's slow drifts do not skew.
  for server in $SERVERS; do start "$server"; started[$server]=$pid; done
  for w in $WORKLOADS; do
    if [ -n "${TOGETHER:-}" ]; then
      if [ "$WARMUP" -gt 0 ]; then
        loads=""
        for server in $SERVERS; do DURATION=$WARMUP run_load "$w" "$server" >/dev/null & loads="$loads $!"; done
        wait $loads
      fi
      for server in $SERVERS; do before[$server]=$(cpu_ticks "$(pids_of "${started[$server]}")"); done
      loads=""
      for server in $SERVERS; do run_load "$w" "$server" >"$work/$server.load" & loads="$loads $!"; done
      wait $loads
      for server in $SERVERS; do after[$server]=$(cpu_ticks "$(pids_of "${started[$server]}")"); done
    fi
    # The servers take turns in an order that rotates each round: none is always first.
    read -ra order <<<"$SERVERS"
    shift_by=$(( (round - 1) % ${#order[@]} ))
    order=("${order[@]:shift_by}" "${order[@]:0:shift_by}")
    for server in "${order[@]}"; do
      procs=$(pids_of "${started[$server]}")
      if [ -n "${TOGETHER:-}" ]; then
        read -r reqs rate l50 l99 <"$work/$server.load"
        ticks=$((after[$server] - before[$server]))
      else
        [ "$WARMUP" -gt 0 ] && DURATION=$WARMUP run_load "$w" "$server" >/dev/null
        b=$(cpu_ticks "$procs")
        # PERF=prefix: a profile of the server during the measured run, in prefix.server.workload.round.
        if [ -n "${PERF:-}" ]; then
          perf record -F 999 -g -o "$PERF.$server.$w.$round" -p "$(echo $procs | tr ' ' ,)" -- sleep $((DURATION - 1)) >/dev/null 2>&1 &
        fi
        # STAT=prefix: system calls and context switches of the server over the same second.
        if [ -n "${STAT:-}" ]; then
          perf stat -e raw_syscalls:sys_enter,context-switches,cpu-migrations -p "$(echo $procs | tr ' ' ,)" -o "$STAT.$server.$w.$round" -- sleep $((DURATION - 1)) &
        fi
        read -r reqs rate l50 l99 < <(run_load "$w" "$server")
        ticks=$(($(cpu_ticks "$procs") - b))
      fi
      us=$(awk -v t=$ticks -v hz="$(getconf CLK_TCK)" -v q="${reqs:-0}" 'BEGIN { if (q > 0) printf "%.1f", t / hz * 1e6 / q; else print "nan" }')
      echo "round $round $server $w: $rate req/s, p50 $l50 ms, p99 $l99 ms, $us us proxy CPU/request ($reqs requests)"
      rps[$server,$w]+="$rate "; cpu[$server,$w]+="$us "; p50[$server,$w]+="$l50 "; p99[$server,$w]+="$l99 "
      last[$server]=$us
    done
    for server in $SERVERS; do
      ratio[$server,$w]+="$(awk -v r="${last[nginx]:-0}" -v c="${last[$server]}" 'BEGIN { if (c > 0 && r > 0) printf "%.3f", r / c }') "
    done
  done
  for server in $SERVERS; do
    pid=${started[$server]}
    kill $pid; wait $pid 2>/dev/null || true
    pkill -P $pid 2>/dev/null || true
  done
done

echo
echo "Medians over $ROUNDS rounds of ${DURATION}s (proxy and backend on CPU 1, load on CPU 0):"
printf '%-10s %-9s %10s %9s %9s %12s %14s\n' workload server req/s "p50 ms" "p99 ms" "cpu us/req" "capacity/nginx"
for w in $WORKLOADS; do
  for server in $SERVERS; do
    c=$(echo "${cpu[$server,$w]}" | median)
    r=$(echo "${ratio[$server,$w]:-}" | median | awk 'NF { printf "%.2f", $1 }')
    printf '%-10s %-9s %10s %9s %9s %12s %14s\n' "$w" "$server" "$(echo "${rps[$server,$w]}" | median)" \
      "$(echo "${p50[$server,$w]}" | median)" "$(echo "${p99[$server,$w]}" | median)" "$c" "${r:+${r}x}"
  done
done

if [ -n "${IDLE_H2:-}" ]; then
  echo
  echo "Memory of $IDLE_H2 idle HTTP/2 connections (one stream each, then idle), per server:"
  # HAProxy refuses to start when the limit is below what its maxconn (4096) needs.
  ulimit -n $((IDLE_H2 * 2 + 256 > 10240 ? IDLE_H2 * 2 + 256 : 10240))
  for server in $SERVERS; do
    start "$server"
    echo "$server: $(python3 benches/load/idle.py --h2 "$(port_of "$server")" "$(pids_of "$pid" | awk '{print $NF}')" /1k "$IDLE_H2" | tr '\n' ' ')"
    kill "$pid"; wait "$pid" 2>/dev/null || true
    pkill -P "$pid" 2>/dev/null || true
  done
fi
