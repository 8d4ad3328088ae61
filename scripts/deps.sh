#!/usr/bin/env bash
# SPDX-License-Identifier: EUPL-1.2
# Installs every build and test dependency of zone-mta from Debian's packages.
# Idempotent and quick when everything is present: it asks dpkg first and only
# calls apt-get for what is missing.  Needs root (or sudo) only when something
# must be installed.
set -euo pipefail

# Build: compiler, CMake, and the libraries listed in DESIGN.md.
build_pkgs=(
  build-essential cmake pkg-config clang
  libevent-dev libssl-dev libfyaml-dev libjansson-dev librocksdb-dev
  libunbound-dev libcmocka-dev libpcre2-dev libgmime-3.0-dev libidn2-dev
  libcurl4-openssl-dev clang-format
  libsystemd-dev scdoc libcrypt-dev liblua5.4-dev
)
# Tests: real peers on loopback.  dnsmasq-base is the bare binary (the
# dnsmasq package would start a system service on port 53).
test_pkgs=(
  python3 python3-pytest python3-aiosmtpd python3-dnspython python3-yaml
  dnsmasq-base swaks libnet-ssleay-perl curl procps iproute2 python3-dkim python3-prometheus-client
  openssl mount whois python3-flufl.bounce microsocks dante-server util-linux rspamd
  systemd man-db
  chromium  # the web page's browser tests (driven by playwright-core from npm)
)
# Node.js for the JavaScript test peers, unless one is on PATH already (a
# Node.js from elsewhere conflicts with Debian's npm).
command -v node >/dev/null && command -v npm >/dev/null || test_pkgs+=(nodejs npm)
# Runtime: the media-types table (/etc/mime.types) names attachment types.
run_pkgs=(media-types)

pkgs=("${build_pkgs[@]}" "${test_pkgs[@]}" "${run_pkgs[@]}")

# JavaScript from the npm registry at the versions each package-lock.json
# pins: uPlot for the web page (ui/, embedded at build time), and the test
# peers (Nodemailer's MailComposer for POST /send, playwright-core).
js_peers() {
  local dir ui
  ui="$(cd "$(dirname "$0")/.." && pwd)/ui"
  if [ ! -f "$ui/node_modules/uplot/dist/uPlot.iife.min.js" ]; then
    echo "deps: npm ci in ui" >&2
    (cd "$ui" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  fi
  dir="$(cd "$(dirname "$0")/.." && pwd)/tests/js"
  if [ ! -d "$dir/node_modules/nodemailer" ] || [ ! -d "$dir/node_modules/playwright-core" ]; then
    echo "deps: npm ci in tests/js" >&2
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  fi
  # ZoneMTA's own package (not installed, only unpacked by the tests): its
  # config/bounces.txt is what our bounce rules are compared with.  The
  # tests check the tarball against the integrity the registry published.
  if [ ! -f "$dir/vendor/zone-mta-3.10.3.tgz" ]; then
    echo "deps: npm pack zone-mta@3.10.3 into tests/js/vendor" >&2
    mkdir -p "$dir/vendor"
    (cd "$dir/vendor" && npm pack zone-mta@3.10.3 --silent >/dev/null)
  fi
}

missing=()
for p in "${pkgs[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)
  case "$status" in
    ii*) ;;
    *) missing+=("$p") ;;
  esac
done

if [ ${#missing[@]} -eq 0 ]; then
  js_peers
  exit 0
fi

echo "deps: installing ${missing[*]}" >&2
sudo=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || { echo "deps: need root to install: ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
# An old or absent package list makes apt-get install fail; refresh it first.
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

js_peers
