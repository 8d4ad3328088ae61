#!/usr/bin/env bash
# SPDX-License-Identifier: EUPL-1.2
# Installs what the benchmarks need beyond scripts/deps.sh: Postfix (the
# baseline MTA, which also brings smtp-source and smtp-sink) from Debian.
# Idempotent and quick when everything is present.
#
# Postfix is installed with debconf's "No configuration", so the package
# writes no /etc/postfix/main.cf and its own service cannot start; a
# temporary policy-rc.d (when the system has none) also tells the package
# scripts not to start any service.  The benchmark runs a private instance
# with its own configuration and queue directories (bench/run.sh).
set -euo pipefail

pkgs=(postfix dnsmasq-base python3 python3-dnspython procps rspamd curl)

missing=()
for p in "${pkgs[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)
  case "$status" in
    ii*) ;;
    *) missing+=("$p") ;;
  esac
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "bench deps: installing ${missing[*]}" >&2
sudo=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || { echo "bench deps: need root to install: ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive

echo "postfix postfix/main_mailer_type select No configuration" | $sudo debconf-set-selections

# Keep the package scripts from starting services while they install.
policy=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\n# Temporary: written by zone-mta bench/deps.sh during apt-get install.\nexit 101\n' |
    $sudo tee "$policy" >/dev/null
  $sudo chmod 755 "$policy"
  made_policy=1
fi
cleanup() { [ "$made_policy" = 1 ] && $sudo rm -f "$policy"; return 0; }
trap cleanup EXIT

$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

# Should the system instance be running after all (an existing main.cf),
# stop it: the benchmark needs no other MTA on this machine.
if [ -f /etc/postfix/main.cf ] && $sudo postfix status >/dev/null 2>&1; then
  echo "bench deps: stopping the system Postfix instance the package started" >&2
  $sudo postfix stop >/dev/null 2>&1 || true
fi
