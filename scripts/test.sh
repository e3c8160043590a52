#!/usr/bin/env bash
# Runs labgate's whole test suite on a fresh Debian machine: installs the system packages the
# build and the tests need (as root, or through sudo), then runs every workspace test with a
# per-test timeout (cargo-nextest when present, else cargo test).
#
#   scripts/test.sh            # everything
#   scripts/test.sh reload     # a filter, passed to the test runner
set -euo pipefail
cd "$(dirname "$0")/.."

# command -> Debian package that provides it
declare -A packages=(
  [cmake]=cmake          # pingora-core builds zlib-ng with cmake
  [cc]=build-essential   # ring, zstd and zlib-ng compile C
  [curl]=curl            # the end-to-end tests are curl clients of the real binary
  [dig]=dnsutils         # ...and dig clients of its DNS server
  [nsupdate]=bind9-dnsutils # a pair's peer sending challenge values (tests/pair_update.rs)
  [kdig]=knot-dnsutils   # ...and Knot's client
  [unbound]=unbound      # a private "internet" upstream for the forwarding tests
  [python3]=python3      # http.server serves URL blocklists in the tests
  [kill]=procps          # SIGHUP in the reload tests
  [openssl]=openssl      # verifies the local CA's chain
  [ip]=iproute2          # the homelab and admin tests put VLAN client addresses on lo
  [ss]=iproute2          # a proxy test waits for a backend's close to reach labgate
  [pebble]=pebble        # a real ACME server for the certificate tests
  [named]=bind9          # a real authoritative server for RFC 2136 updates
  [tsig-keygen]=bind9-utils # ...and its TSIG keys
  [setpriv]=util-linux   # runs labgate as the systemd unit does: nobody + CAP_NET_BIND_SERVICE
  [systemd-analyze]=systemd # checks deploy/labgate.service
  [nghttp]=nghttp2-client  # HTTP/2 clients for tests/h2.rs: nghttp...
  [h2load]=nghttp2-client  # ...and h2load
  [git]=git                # the configuration checkout the pull unit updates (tests/deploy.rs)
  [sqlite3]=sqlite3        # reads the DNS query log in tests/querylog.rs
  [chromium]=chromium      # the status page in a real browser (tests/browser.rs)...
  [chromedriver]=chromium-driver  # ...driven over WebDriver
  [dnstap]=golang-github-dnstap-golang-dnstap-cli  # reads labgate's dnstap stream (tests/dnstap.rs)...
  [fstrm_capture]=fstrm-bin  # ...libfstrm's Frame Streams capture over TCP...
  [dnstap-ldns]=dnstap-ldns  # ...decoded by the C reader
  [promtool]=prometheus    # checks and unit-tests deploy/prometheus/labgate-rules.yml
  [prometheus]=prometheus  # scrapes a running labgate for every query of deploy/grafana/labgate.json
  [keepalived]=keepalived  # VRRP: two labgates behind one address in namespaces (tests/pair.rs)
  [nft]=nftables           # ...where a firewall rule silences one node's DNS
)
# Python module -> Debian package; checked with Debian's interpreter, whose dist-packages they
# install into (tests/h2/frames.py runs under /usr/bin/python3, whatever python3 PATH finds).
declare -A python_modules=(
  [h2]=python3-h2          # HPACK and frames for tests/h2/frames.py
)
missing=()
for cmd in "${!packages[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${packages[$cmd]}")
done
for module in "${!python_modules[@]}"; do
  /usr/bin/python3 -c "import $module" >/dev/null 2>&1 || missing+=("${python_modules[$module]}")
done
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "scripts/test.sh: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --locked --workspace --no-fail-fast "$@"
  cargo test --locked --workspace --doc "$@"
else
  echo "scripts/test.sh: cargo-nextest not found, using cargo test (no per-test timeout)"
  cargo test --locked --workspace --no-fail-fast "$@"
fi
