# Shared by the load scripts: a server's processes, their CPU time and memory, medians.

# Every process of a server, descendants included (NSD: xfrd, then main, then the server;
# nginx: master, then workers).
pids_of() {
  local all=$1 frontier=$1 next p
  while [ -n "$frontier" ]; do
    next=""
    for p in $frontier; do next="$next $(pgrep -P "$p" | tr '\n' ' ')"; done
    frontier=$(echo $next)
    all="$all $frontier"
  done
  echo "$all"
}

# Clock ticks of utime + stime over the processes, read after the command name (NSD's
# "nsd: server 1" has spaces).
cpu_ticks() {
  local t=0 p
  for p in $1; do t=$((t + $(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}' || echo 0))); done
  echo $t
}

# CPU time of the processes, every thread's, in nanoseconds (schedstat: finer than the clock
# ticks of cpu_ticks, for short slices at a low rate).
cpu_ns() {
  local t=0 p
  for p in $1; do t=$((t + $(cat /proc/$p/task/*/schedstat 2>/dev/null | awk '{s += $1} END {printf "%.0f", s}'))); done
  echo $t
}

# Resident memory of the processes, KiB.
rss_kib() {
  local t=0 p
  for p in $1; do t=$((t + $(awk '/^VmRSS/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0))); done
  echo $t
}

# The median of the numbers on stdin (space-separated).
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

# The proxy benchmarks' shared files in $work: an ECDSA P-256 certificate for $HOST
# (cert.pem, key.pem), the nginx backend's configuration on $BACKEND (backend.conf), and
# labgate's configuration (labgate.toml) serving $HOST over HTTPS on port $1 from that
# certificate to 127.0.0.0/8; $2 goes before its [listen] table, $3 at the end of its service.
https_bench_files() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=$HOST" \
    -addext "subjectAltName=DNS:$HOST,IP:127.0.0.1" -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
  cat > "$work/backend.conf" <<EOF
worker_processes 1; daemon off; pid $work/backend.pid; error_log $work/backend.err;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$BACKEND; root $work/www; } }
EOF
  {
    if [ -n "${2:-}" ]; then printf '%s\n' "$2"; fi
    cat <<EOF
[listen]
dns = ["127.0.0.1:0"]
https = ["127.0.0.1:$1"]
http = ["127.0.0.1:18451"]
admin = "127.0.0.1:0"
[tls]
default_name = "$HOST"
[[certificate]]
names = ["$HOST"]
source = "files"
cert_file = "$work/cert.pem"
key_file = "$work/key.pem"
[[network]]
name = "lab"
cidrs = ["127.0.0.0/8"]
addresses = ["127.0.0.1"]
[[zone]]
name = "bench.test"
[[service]]
host = "$HOST"
backends = ["http://127.0.0.1:$BACKEND"]
allow = ["lab"]
EOF
    if [ -n "${3:-}" ]; then printf '%s\n' "$3"; fi
  } > "$work/labgate.toml"
}
