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

# Resident memory of the processes, KiB.
rss_kib() {
  local t=0 p
  for p in $1; do t=$((t + $(awk '/^VmRSS/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0))); done
  echo $t
}

# The median of the numbers on stdin (space-separated).
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
