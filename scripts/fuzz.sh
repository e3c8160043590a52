#!/usr/bin/env bash
# Builds every fuzz target in fuzz/ and runs each for SECONDS (default 20) from its seed corpus,
# printing libFuzzer's last status line (executions, coverage, corpus) per target. CI runs it
# briefly so that a target that no longer builds, or crashes at once, fails the build; a real
# campaign is the same with a longer time (e.g. `scripts/fuzz.sh 1800`).
#
#   scripts/fuzz.sh              # 20 s per target
#   scripts/fuzz.sh 1800 dns_handle http_framing
#   RUNS=10000000 scripts/fuzz.sh 1800 host_normalize   # 10 million runs or 30 min
#
# New inputs go to a temporary copy of each corpus, never into the repository; a crash leaves
# its input in fuzz/artifacts/<target>/ and fails the script. cargo-fuzz needs nightly flags:
# RUSTC_BOOTSTRAP=1 lets the stable toolchain take them.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-20}
shift || true
export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
targets=("$@")
if ((${#targets[@]} == 0)); then
  mapfile -t targets < <(cd fuzz && cargo fuzz list)
fi
for t in "${targets[@]}"; do (cd fuzz && cargo fuzz build "$t"); done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for t in "${targets[@]}"; do
  mkdir -p "$work/$t"
  seeds=()
  [ -d "fuzz/corpus/$t" ] && seeds=("corpus/$t")
  log="$work/$t.log"
  if ! (cd fuzz && cargo fuzz run "$t" "$work/$t" "${seeds[@]}" -- \
      -max_total_time="$seconds" ${RUNS:+-runs="$RUNS"} -print_final_stats=1 >"$log" 2>&1); then
    tail -40 "$log"
    echo "fuzz: $t failed (input in fuzz/artifacts/$t/)"
    exit 1
  fi
  last=$(grep -E '^#[0-9]+' "$log" | tail -1)
  echo "fuzz: $t: $last"
done
