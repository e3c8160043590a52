#!/usr/bin/env bash
# Upgrades and restarts under load (issue 25): what a new binary or a restart costs the
# clients, side by side in one run.
#
# DNS: dnsperf asks at a fixed RATE for DURATION seconds; AT seconds in, the server is
# upgraded or restarted: labgate by SIGUSR2 (the socket hand-over, src/upgrade.rs), Unbound
# and dnsmasq by a restart (stop, start: what their packages do for a new binary), and labgate
# by a plain restart for comparison, and by a restart under systemd with the unit's descriptor
# store (`labgate-fdstore`: tests/upgrade/fake_systemd.py plays systemd, as in the tests). Reported: queries sent, lost (dnsperf's count; up to
# 50,000 outstanding, so a server that is away loses what was sent meanwhile), p99.
#
# HTTP: wrk (16 connections, keep-alive) and a loop of one-request connections (curl) through
# the proxy to an nginx backend for DURATION seconds; AT seconds in, labgate gets SIGUSR2 and
# nginx its documented binary upgrade (USR2, then WINCH and QUIT to the old master once the new
# one runs). Reported: wrk's requests and errors (connect, read, write, timeout, non-2xx), its
# p99, and the curl loop's failures.
#
#   benches/load/upgrade.sh                 # RATE=5000 DURATION=8 AT=3
#   RATE=20000 benches/load/upgrade.sh
#
# Needs: dnsperf unbound dnsmasq nginx-light wrk curl (apt-get install ...).
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=benches/load/lib.sh
source benches/load/lib.sh
RATE=${RATE:-5000}
DURATION=${DURATION:-8}
AT=${AT:-3}
for cmd in dnsperf unbound dnsmasq nginx wrk curl taskset; do
  command -v "$cmd" >/dev/null || { echo "missing $cmd: apt-get install dnsperf unbound dnsmasq-base nginx-light wrk curl"; exit 1; }
done
[ -x target/release/labgate ] || cargo build --release --bin labgate
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; pkill -f "$work" 2>/dev/null || true; rm -rf "$work"' EXIT
chmod 755 "$work"
mkdir -p "$work/www" "$work/state" "$work/out"
head -c 1024 /dev/zero | tr '\0' x > "$work/www/1k"
HOST=app.bench.test
BACKEND=18090

# labgate: DNS on 15401, plain HTTP on 18461, admin on 15411; a record and a service.
cat > "$work/labgate.toml" <<EOF2
[listen]
dns = ["127.0.0.1:15401"]
http = ["127.0.0.1:18461"]
https = []
admin = "127.0.0.1:15411"
[[network]]
name = "a"
cidrs = ["127.0.0.0/8"]
addresses = ["127.0.0.1"]
[[zone]]
name = "bench.test"
[[record]]
name = "host001.bench.test"
type = "A"
value = "10.0.0.1"
[[service]]
host = "$HOST"
backends = ["http://127.0.0.1:$BACKEND"]
allow = ["a"]
plain_http = true
EOF2
printf 'server:\n  interface: 127.0.0.1\n  port: 15402\n  num-threads: 1\n  do-daemonize: no\n  use-syslog: no\n  username: ""\n  chroot: ""\n  directory: "%s"\n  pidfile: "%s/unbound.pid"\n  access-control: 127.0.0.0/8 allow\n  local-zone: "bench.test." static\n  local-data: "host001.bench.test. 300 IN A 10.0.0.1"\n' "$work" "$work" > "$work/unbound.conf"
echo "10.0.0.1 host001.bench.test" > "$work/dnsmasq.hosts"
echo "host001.bench.test A" > "$work/queries"
cat > "$work/backend.conf" <<EOF2
worker_processes 1; daemon off; pid $work/backend.pid; error_log $work/backend.err;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$BACKEND; root $work/www; } }
EOF2
cat > "$work/nginx.conf" <<EOF2
worker_processes 1; pid $work/nginx.pid; error_log $work/nginx.err;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  upstream b { server 127.0.0.1:$BACKEND; keepalive 32; }
  server { listen 127.0.0.1:18462; location / { proxy_pass http://b; proxy_http_version 1.1;
    proxy_set_header Connection ""; } } }
EOF2
taskset -c 1 nginx -c "$work/backend.conf" -p "$work" >/dev/null 2>&1 &

dns_port() { case $1 in labgate|labgate-restart|labgate-fdstore) echo 15401 ;; unbound) echo 15402 ;; dnsmasq) echo 15403 ;; esac; }
start_dns() {
  case $1 in
    labgate|labgate-restart) LABGATE_LOG=warn taskset -c 0 target/release/labgate run --config "$work/labgate.toml" --state-dir "$work/state" >>"$work/labgate.log" 2>&1 & ;;
    # systemd's part played by the test's stand-in, told to restart through the fifo that
    # the loop holds open as fd 9.
    labgate-fdstore)
      LABGATE_LOG=warn taskset -c 0 python3 tests/upgrade/fake_systemd.py "$work/notify.sock" \
        target/release/labgate run --config "$work/labgate.toml" --state-dir "$work/state" \
        <"$work/ctl" >"$work/systemd.out" 2>>"$work/labgate.log" & ;;
    unbound) taskset -c 0 unbound -d -c "$work/unbound.conf" >/dev/null 2>&1 & ;;
    dnsmasq) taskset -c 0 dnsmasq -k -p 15403 --listen-address=127.0.0.1 --bind-interfaces --no-resolv --no-hosts \
               --addn-hosts="$work/dnsmasq.hosts" --user=root >/dev/null 2>&1 & ;;
  esac
  local pid=$!
  for _ in $(seq 1 100); do
    dig @127.0.0.1 -p "$(dns_port "$1")" +time=1 +tries=1 +short host001.bench.test | grep -q 10.0.0.1 && { echo $pid; return; }
    sleep 0.1
  done
  echo "$1 did not start" >&2; exit 1
}
# The pid now serving labgate's admin endpoint (after an upgrade, the new process's).
labgate_pid() { pgrep -f "state-dir $work/state" | head -1; }

echo "DNS: $RATE q/s for $DURATION s, the upgrade or restart $AT s in"
printf '%-18s %10s %8s %10s\n' server sent lost "p99 ms"
for server in labgate labgate-restart labgate-fdstore unbound dnsmasq; do
  if [ "$server" = labgate-fdstore ]; then
    rm -f "$work/ctl" "$work/notify.sock"; mkfifo "$work/ctl"; exec 9<>"$work/ctl"
  fi
  pid=$(start_dns $server)
  taskset -c 1 dnsperf -s 127.0.0.1 -p "$(dns_port $server)" -d "$work/queries" -Q "$RATE" -q 50000 -l "$DURATION" -t 2 -v >"$work/out/dnsperf.$server" 2>&1 &
  perf=$!
  sleep "$AT"
  case $server in
    labgate) kill -USR2 "$(labgate_pid)" ;;
    labgate-restart) kill "$(labgate_pid)"; while pgrep -f "state-dir $work/state" >/dev/null; do sleep 0.05; done; pid=$(start_dns labgate) ;;
    labgate-fdstore)
      echo restart >&9
      for _ in $(seq 1 200); do [ "$(grep -c '^ready' "$work/systemd.out")" -ge 2 ] && break; sleep 0.05; done ;;
    unbound) kill "$pid"; wait "$pid" 2>/dev/null || true; pid=$(start_dns unbound) ;;
    dnsmasq) kill "$pid"; wait "$pid" 2>/dev/null || true; pid=$(start_dns dnsmasq) ;;
  esac
  wait $perf || true
  sent=$(awk '/Queries sent:/ {print $3}' "$work/out/dnsperf.$server")
  lost=$(awk '/Queries lost:/ {print $3}' "$work/out/dnsperf.$server")
  p99=$(awk '$1 == ">" {print $NF * 1000}' "$work/out/dnsperf.$server" | sort -g | awk '{v[NR]=$1} END {if (NR) printf "%.2f", v[int(NR*0.99)+1]; else print "-"}')
  printf '%-18s %10s %8s %10s\n' "$server" "$sent" "$lost" "$p99"
  [ "$server" = labgate-fdstore ] && exec 9>&-
  pkill -f "state-dir $work/state" 2>/dev/null || true
  kill $(pids_of "$pid") 2>/dev/null || true
  while pgrep -f "state-dir $work/state" >/dev/null; do sleep 0.05; done
  sleep 0.5
done

echo
echo "HTTP: wrk -c16 keep-alive and a loop of one-request connections for $DURATION s, the upgrade $AT s in"
printf '%-10s %10s %30s %10s %14s\n' server requests "wrk errors" "p99 ms" "loop failed"
for server in labgate nginx; do
  case $server in
    labgate) LABGATE_LOG=warn taskset -c 0 target/release/labgate run --config "$work/labgate.toml" --state-dir "$work/state" >>"$work/labgate.log" 2>&1 & port=18461 ;;
    # By its absolute path: USR2 starts the new master from argv[0].
    nginx) taskset -c 0 "$(command -v nginx)" -c "$work/nginx.conf" -p "$work" >/dev/null 2>&1; port=18462 ;;
  esac
  for _ in $(seq 1 100); do curl -s -H "Host: $HOST" "http://127.0.0.1:$port/1k" | grep -q xxxx && break; sleep 0.1; done
  taskset -c 1 wrk -t1 -c16 -d"${DURATION}s" --latency -H "Host: $HOST" "http://127.0.0.1:$port/1k" >"$work/out/wrk.$server" 2>&1 &
  load=$!
  (
    end=$((SECONDS + DURATION)); failed=0; n=0
    while [ $SECONDS -lt $end ]; do
      n=$((n + 1))
      curl -s -m 5 -o /dev/null -w '%{http_code}' -H "Host: $HOST" -H "Connection: close" "http://127.0.0.1:$port/1k" | grep -q 200 || failed=$((failed + 1))
    done
    echo "$failed of $n"
  ) >"$work/out/loop.$server" &
  loop=$!
  sleep "$AT"
  case $server in
    labgate) kill -USR2 "$(labgate_pid)" ;;
    nginx)
      old=$(cat "$work/nginx.pid")
      kill -USR2 "$old"
      for _ in $(seq 1 100); do [ -f "$work/nginx.pid.oldbin" ] && [ -s "$work/nginx.pid" ] && break; sleep 0.05; done
      [ -f "$work/nginx.pid.oldbin" ] || { echo "nginx's new master did not start: $(tail -2 "$work/nginx.err")"; exit 1; }
      # The documented sequence: the old workers stop taking connections, then the old master.
      kill -WINCH "$old"; sleep 0.5; kill -QUIT "$old" ;;
  esac
  wait $load || true
  wait $loop || true
  out=$(cat "$work/out/wrk.$server")
  reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  errs=$(echo "$out" | awk '/Socket errors/ {gsub(",", ""); printf "connect %s read %s write %s timeout %s", $4, $6, $8, $10} /Non-2xx/ {printf " non-2xx %s", $5}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}' | awk '{ v = $1; if (v ~ /us$/) { sub(/us$/, "", v); v /= 1000 } else if (v ~ /ms$/) { sub(/ms$/, "", v) } else if (v ~ /s$/) { sub(/s$/, "", v); v *= 1000 } print v }')
  printf '%-10s %10s %30s %10s %14s\n' "$server" "$reqs" "${errs:-0}" "$p99" "$(cat "$work/out/loop.$server")"
  case $server in
    labgate) pkill -f "state-dir $work/state" || true ;;
    nginx) kill -QUIT "$(cat "$work/nginx.pid")" 2>/dev/null || true ;;
  esac
  sleep 1
done
