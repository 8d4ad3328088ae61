#!/usr/bin/env bash
# SPDX-License-Identifier: EUPL-1.2
# Benchmarks zone-mta against Postfix, side by side in one run (make bench;
# issue 7).  Usage: bash bench/run.sh [BUILD_DIR]   (QUICK=1: smaller sizes)
#
# Installs Postfix (bench/deps.sh), then starts everything itself on
# 127.0.0.1 only: dnsmasq (the MX of sink.bench.test), smtp-sink (the
# destination of every relayed message), zone-mta instances and private
# Postfix instances (own configuration and queue folders under a temp
# folder), and stops each by its pid at the end, on failure and on Ctrl-C.
# Both MTAs acknowledge durably: nothing turns fsync off.
#
#   1. relay throughput: smtp-source, N x 2 KB, 20 sessions, in; smtp-sink out
#   2. the same with 100 KB messages, and with DKIM rsa-2048 signing
#   3. one 1 GB message through SMTP in and out: time and peak RSS
#   4. queue scale: 1,000,000 queued recipients: restart time, RSS, the
#      latency of GET /queue/default, and how long deliveries to another
#      zone wait for their message while GET /queued lists the big one;
#      then GET /summary, a page deep in GET /deliveries, and the whole
#      zone deleted by one POST /ops while mail flows (SMTP transactions
#      and GET /health timed)
#   5. ingest latency p50/p99 at a fixed offered load
#   6. ingest throughput over STARTTLS: N x 2 KB, 20 sessions, a full TLS
#      handshake per message, into both MTAs with the same certificate
#   7. the suppression list at 1,000,000 entries: fill time, RSS, lookup
#      time (and at 1,000: O(1)); Postfix: an access table of the same
#   8. item 1 without plugins and with a trivial Lua plugin on
#      message:headers and sender:headers (zone-mta against itself)
#   9. item 1 with every message checked by one Rspamd (Debian's): zone-mta
#      through /checkv2, Postfix through Rspamd's milter proxy, and
#      Rspamd's own rate (20 clients posting to /checkv2) as the ceiling
#
# Prints each figure as it is measured, then a table with the ratios
# zone-mta / Postfix and the issue's targets.  Exits 0 when everything ran
# (whether or not the targets are met), 1 when something failed to run.
# ITEMS="2 3" runs only those items.
# BENCH_TMPDIR chooses where the temp folder goes (default /var/tmp, a
# disk: on tmpfs fsync would cost nothing); BENCH_KEEP=1 keeps it.
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
build=${1:-build}
QUICK=${QUICK:-}
[ "$QUICK" = 0 ] && QUICK=
PY="/usr/bin/python3 -B" # Debian's python3: it has dnspython

die() { printf 'bench: %s\n' "$*" >&2; exit 1; }

[ -x "$build/zone-mta" ] || die "no zone-mta binary in $build (run make bench, or make build first)"
BIN=$(cd "$build" && pwd)/zone-mta
[ "$(id -u)" = 0 ] || die "run as root: Postfix's master process starts as root (and so does smtp-sink -u)"
bash "$HERE/deps.sh" || die "could not install the benchmark's packages (bench/deps.sh)"

# shellcheck source=bench/lib.sh
source "$HERE/lib.sh"

tmpbase=${BENCH_TMPDIR:-/var/tmp}
WORK=$(mktemp -d "$tmpbase/zmta-bench.XXXXXX") || die "cannot make a temp folder in $tmpbase"
chmod 755 "$WORK" # Postfix's processes (user postfix) need to reach their queue
RESULTS="$WORK/results.txt"
trap bench_cleanup EXIT
trap 'warn "interrupted: stopping every server"; exit 130' INT TERM

# --- sizes ------------------------------------------------------------------------
if [ -n "$QUICK" ]; then
  MODE="quick (QUICK=1: reduced sizes; the targets are set for the full sizes)"
  N1=2000 N2=1000 SIZE3=$((10 << 20)) MSGS4=20 SECS5=5 N6=1000 TIMEOUT=120
else
  MODE="full"
  N1=20000 N2=20000 SIZE3=$((1 << 30)) MSGS4=1000 SECS5=10 N6=5000 TIMEOUT=420
fi
SIZE1=2048 SIZE2=102400 SESSIONS=20 RCPTS4=1000 RATE5=200

result() { printf '%s=%s\n' "$1" "$2" >>"$RESULTS"; }
# since T0 [T1] [DIGITS]: seconds from T0 to T1 (default: now), both $EPOCHREALTIME.
since() { awk -v a="$1" -v b="${2:-$EPOCHREALTIME}" -v d="${3:-2}" 'BEGIN { printf "%.*f", d, b - a }'; }
section() { printf '\n== %s\n' "$*"; }

# throughput LABEL PORT N SIZE: one smtp-source run through one MTA.
throughput() {
  sync # start every run with the page cache written back
  child $PY "$HERE/throughput.py" --label "$1" --port "$2" --messages "$3" --size "$4" \
    --sessions "$SESSIONS" --sink-log "$SINK_LOG" --results "$RESULTS" --timeout "$TIMEOUT"
}

# --- the items --------------------------------------------------------------------
# Each item measures zone-mta, then Postfix; a failure of one side is
# reported and does not keep the other from being measured.

# on_zmta NAME EXTRA_YAML FUNC: starts zone-mta (see zmta_start), runs FUNC,
# stops zone-mta.  Fails when any of them fails (zone-mta is stopped then too).
on_zmta() {
  zmta_start "$1" "$2" && "$3" && zmta_stop && return 0
  [ -n "${ZMTA_PID:-}" ] && { zmta_stop >/dev/null 2>&1 || true; }
  return 1
}

# on_postfix NAME FUNC [EXTRA_MAIN_CF]: the same with a private Postfix
# instance.
on_postfix() {
  pf_start "$1" "${3:-}" && "$2" && pf_stop && return 0
  pf_stop
  return 1
}

i1_zmta() { throughput i1.zmta "$ZMTA_SMTP" "$N1" "$SIZE1"; }
i1_pf() { throughput i1.pf "$PF_PORT" "$N1" "$SIZE1"; }

item1() {
  section "1. Relay throughput: $N1 messages of 2 KB, $SESSIONS sessions (smtp-source -> MTA -> smtp-sink)"
  local rc=0
  on_zmta i1-zmta "" i1_zmta || rc=1
  on_postfix i1-postfix i1_pf || rc=1
  return $rc
}

# The DKIM key and configuration of item 2 (set by item2).
DKIM_KEY= DKIM_YAML=

# dkim_check: relays one message through a zone-mta configured with
# DKIM_YAML into a dumping smtp-sink; true when it arrived signed with
# rsa-sha256.
dkim_check() {
  local main=("$SINK_PORT" "$SINK_PID" "$SINK_LOG") dump="$WORK/dkim-dump" ok=1
  sink_start "$dump" || return 1
  if on_zmta i2-dkim-check "$DKIM_YAML" dkim_check_send; then ok=1; else ok=0; fi
  stop_pid "$SINK_PID" smtp-sink
  SINK_PORT=${main[0]} SINK_PID=${main[1]} SINK_LOG=${main[2]}
  [ $ok = 1 ] || return 1
  local header sigs
  header=$(cat "$dump"/* 2>/dev/null | sed '/^\r\?$/q')
  sigs=$(grep -ci '^DKIM-Signature:' <<<"$header")
  if [ "$sigs" -ge 1 ] && tr -d ' \t\r\n' <<<"$header" | grep -q 'a=rsa-sha256'; then
    log "  DKIM check: a relayed message carries $sigs DKIM-Signature header(s), a=rsa-sha256"
    return 0
  fi
  warn "DKIM check: the relayed message has no rsa-sha256 DKIM-Signature; its header:"
  printf '%s\n' "$header" >&2
  return 1
}
dkim_check_send() {
  child /usr/sbin/smtp-source -m 1 -l 2048 -M client.bench.test -f sender@bench.test \
    -t rcpt@sink.bench.test "127.0.0.1:$ZMTA_SMTP" &&
    child $PY "$HERE/tools.py" wait-sink "$SINK_LOG" 1 30
}

i2_zmta() { throughput i2.zmta "$ZMTA_SMTP" "$N2" "$SIZE2"; }
i2_pf() { throughput i2.pf "$PF_PORT" "$N2" "$SIZE2"; }
i2_dkim() { throughput i2.dkim "$ZMTA_SMTP" "$N2" "$SIZE2"; }

item2() {
  section "2. Relay throughput: $N2 messages of 100 KB, $SESSIONS sessions"
  local rc=0
  on_zmta i2-zmta "" i2_zmta || rc=1
  on_postfix i2-postfix i2_pf || rc=1

  # DKIM: measured when this zone-mta can sign (it has `dkim keygen`); the
  # baseline is Postfix without signing (above).
  DKIM_KEY="$WORK/dkim-rsa2048.pem"
  if ! "$BIN" dkim keygen --domain bench.test --selector bench --type rsa --bits 2048 \
    --out "$DKIM_KEY" >"$WORK/dkim-keygen.out" 2>&1; then
    log "  DKIM: not implemented yet, skipped (this zone-mta has no 'dkim keygen')"
    result i2.dkim skipped
    return $rc
  fi
  # smtp-source writes "From: <sender@bench.test>": signed with this key.
  DKIM_YAML="dkim:
  keys:
    - domain: bench.test
      selector: bench
      privateKey: $DKIM_KEY"
  if dkim_check && on_zmta i2-dkim "$DKIM_YAML" i2_dkim; then
    result i2.dkim ok
  else
    result i2.dkim failed
    rc=1
  fi
  return $rc
}

i3_zmta() {
  sync
  child $PY "$HERE/bigmsg.py" --label i3.zmta --port "$ZMTA_SMTP" --size "$SIZE3" \
    --sink-log "$SINK_LOG" --pid "$ZMTA_PID" --results "$RESULTS" --timeout "$TIMEOUT"
}
i3_pf() {
  sync
  child $PY "$HERE/bigmsg.py" --label i3.pf --port "$PF_PORT" --size "$SIZE3" \
    --sink-log "$SINK_LOG" --results "$RESULTS" --timeout "$TIMEOUT"
}

item3() {
  section "3. One $((SIZE3 >> 20)) MiB message through SMTP in and out"
  local rc=0
  on_zmta i3-zmta "" i3_zmta || rc=1
  on_postfix i3-postfix i3_pf || rc=1
  return $rc
}

# Item 4 (zone-mta only: the targets are absolute).  Fills the queue, then
# restarts zone-mta and measures.
i4_zmta() {
  child $PY "$HERE/fillqueue.py" --label i4 --port "$ZMTA_SMTP" --messages "$MSGS4" \
    --rcpts "$RCPTS4" --conns 4 --results "$RESULTS" || return 1
  child $PY "$HERE/tools.py" queue-api "http://127.0.0.1:$ZMTA_API/queue/default" 5 \
    i4.before "$RESULTS" || return 1
  local t0 t1 lines restart rss hwm recovered
  t0=$EPOCHREALTIME
  zmta_stop || return 1
  t1=$EPOCHREALTIME
  log "  stop (SIGTERM to exit): $(since "$t0" "$t1") s"
  sync
  lines=$(wc -l <"$ZMTA_LOG")
  t0=$EPOCHREALTIME
  zmta_run || return 1
  t1=$EPOCHREALTIME
  restart=$(since "$t0" "$t1" 3)
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$ZMTA_PID/status")
  recovered=$(tail -n +"$((lines + 1))" "$ZMTA_LOG" | grep -m1 'event=queue_recovered')
  [ -n "$recovered" ] || { warn "no event=queue_recovered line after the restart"; return 1; }
  log "  restart (exec to /health answering): $restart s; RSS then $((rss / 1024)) MiB"
  log "  log: ${recovered#* * }"
  result i4.restart_s "$restart"
  result i4.rss_ready_kb "$rss"
  sleep 2 # let the scheduler settle with every row loaded
  child $PY "$HERE/tools.py" queue-api "http://127.0.0.1:$ZMTA_API/queue/default" 20 \
    i4 "$RESULTS" || return 1
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$ZMTA_PID/status")
  hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$ZMTA_PID/status")
  log "  RSS after the API calls: $((rss / 1024)) MiB; peak since the restart (VmHWM): $((hwm / 1024)) MiB"
  result i4.rss_kb "$rss"
  result i4.hwm_kb "$hwm"
  log "  Mail flowing to another zone while the big one is listed again and again:"
  child $PY "$HERE/listing.py" --api "http://127.0.0.1:$ZMTA_API" --port "$ZMTA_SMTP" \
    --seconds "$SECS5" --rate 50 --label i4 --results "$RESULTS" || return 1
  log "  Queue administration: the big zone summarised, paged, then deleted by one operation while mail flows:"
  child $PY "$HERE/purge.py" --api "http://127.0.0.1:$ZMTA_API" --port "$ZMTA_SMTP" \
    --rate 50 --label i4.admin --results "$RESULTS" || return 1
}

item4() {
  section "4. Queue scale: $((MSGS4 * RCPTS4)) queued recipients ($MSGS4 messages x $RCPTS4), then a restart"
  # The zone is disabled, so every recipient stays queued; info level, for
  # the event=queue_recovered line (no per-delivery lines: nothing is sent).
  on_zmta i4-zmta "zones:
  default:
    disabled: true
  live:
    port: $SINK_PORT
    connections: 4
    recipientDomains: [sink.bench.test]
log:
  level: info" i4_zmta
}

i5_zmta() {
  sync
  child $PY "$HERE/latency.py" --label i5.zmta --port "$ZMTA_SMTP" --rate "$RATE5" \
    --seconds "$SECS5" --results "$RESULTS"
}
i5_pf() {
  sync
  child $PY "$HERE/latency.py" --label i5.pf --port "$PF_PORT" --rate "$RATE5" \
    --seconds "$SECS5" --results "$RESULTS"
}

item5() {
  section "5. Ingest latency at $RATE5 msgs/s offered for $SECS5 s (2 KB messages, 20 connections)"
  local rc=0
  on_zmta i5-zmta "" i5_zmta || rc=1
  on_postfix i5-postfix i5_pf || rc=1
  return $rc
}

i6_zmta() { tls_throughput i6.zmta "$ZMTA_SMTP"; }
i6_pf() { tls_throughput i6.pf "$PF_PORT"; }
tls_throughput() {
  sync
  child $PY "$HERE/tlsingest.py" --label "$1" --port "$2" --messages "$N6" --size "$SIZE1" \
    --sessions "$SESSIONS" --sink-log "$SINK_LOG" --results "$RESULTS" --timeout "$TIMEOUT"
}

item6() {
  section "6. Ingest over STARTTLS: $N6 messages of 2 KB, $SESSIONS sessions, a TLS handshake each"
  # One certificate for both (EC P-256, as is common), TLS 1.2 and newer
  # on both; each side's default ciphers.
  local key="$WORK/tls-key.pem" cert="$WORK/tls-cert.pem" rc=0
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$key" -out "$cert" -days 2 -subj /CN=bench.test >/dev/null 2>&1 ||
    { warn "openssl could not make the test certificate"; return 1; }
  chmod 644 "$key" # Postfix's smtpd reads it as user postfix
  on_zmta i6-zmta "smtpInterfaces:
  feeder:
    starttls: true
    key: $key
    cert: $cert" i6_zmta || rc=1
  on_postfix i6-postfix i6_pf "smtpd_tls_cert_file = $cert
smtpd_tls_key_file = $key
smtpd_tls_security_level = may
smtpd_tls_protocols = >=TLSv1.2
smtpd_tls_mandatory_protocols = >=TLSv1.2" || rc=1
  return $rc
}

# Item 7: the suppression list's index at 1,000,000 entries (and at 1,000,
# to show lookups stay O(1)): fill time, RSS, ns per lookup.  Postfix's
# counterpart is an access table (check_recipient_access hash:...) of the
# same entries: postmap builds it, `postmap -q -` looks keys up in one
# process.
i7_pf() {
  local n=$1 table="$WORK/i7-access" keys="$WORK/i7-keys" etc="$WORK/i7-etc" t0
  mkdir -p "$etc" && echo "compatibility_level = 3.6" >"$etc/main.cf"
  awk -v n="$n" 'BEGIN { for (i = 0; i < n; i++) printf "user%d@d%d.example.test REJECT\n", i, i % 1000;
                         for (i = 0; i < n / 100; i++) printf "blocked%d.test REJECT\n", i }' >"$table"
  awk -v n="$n" 'BEGIN { srand(1); for (k = 0; k < 1000000; k++) { i = int(rand() * n); printf "user%d@d%d.example.test\n", i, i % 1000 } }' >"$keys"
  t0=$EPOCHREALTIME
  /usr/sbin/postmap -c "$etc" "hash:$table" || return 1
  result i7.pf.fill_s "$(since "$t0" "$EPOCHREALTIME" 3)"
  t0=$EPOCHREALTIME
  local found
  found=$(/usr/sbin/postmap -c "$etc" -q - "hash:$table" <"$keys" | wc -l)
  result i7.pf.lookup_hit_ns "$(awk -v s="$(since "$t0" "$EPOCHREALTIME" 6)" 'BEGIN { printf "%.0f", s * 1e9 / 1000000 }')"
  log "  Postfix access table: $n entries, $found of 1,000,000 lookups found"
  rm -f "$table" "$table.db" "$keys"
}

item7() {
  local n=1000000
  [ -n "$QUICK" ] && n=100000
  section "7. Suppression list: $n entries in memory (zone-mta) and an access table (Postfix)"
  local bench="$build/zmta-suppress-bench"
  [ -x "$bench" ] || { warn "no $bench (make build)"; return 1; }
  "$bench" 1000 i7.small >>"$RESULTS" || return 1
  "$bench" "$n" i7.zmta >>"$RESULTS" || return 1
  result meta.n7 "$n"
  grep '^i7\.zmta\.' "$RESULTS" | sed 's/^/  /'
  i7_pf "$n"
}

# Item 8: the cost of a Lua plugin.  Item 1's relay throughput, once
# without plugins and once with one trivial handler on message:headers and
# one on sender:headers (each adds a header): the ratio is the cost.
# Postfix has no counterpart (its milters are separate processes), so the
# figures compare zone-mta with itself.
# (LUA_TRIVIAL in the environment replaces the plugin, for experiments.)
LUA_TRIVIAL=${LUA_TRIVIAL:-'zmta.hook("message:headers", function(ctx) ctx.headers:add("X-Bench", "in") end)
zmta.hook("sender:headers", function(ctx) ctx.headers:add("X-Bench-Out", ctx.delivery.zone) end)'}
# Rounds alternate (plain, Lua, plain, Lua, ...): this machine's disk makes
# single runs vary by tens of per cent; report.py takes each side's median.
ROUNDS8=${ROUNDS8:-3}
i8_plain() { throughput "i8.plain.$I8_ROUND" "$ZMTA_SMTP" "$N1" "$SIZE1"; }
i8_lua() { throughput "i8.lua.$I8_ROUND" "$ZMTA_SMTP" "$N1" "$SIZE1"; }

item8() {
  local rounds=$ROUNDS8
  [ -n "$QUICK" ] && rounds=1
  section "8. Relay throughput with a trivial Lua plugin: $N1 messages of 2 KB, $SESSIONS sessions, $rounds rounds"
  local rc=0 plugin="$WORK/i8-trivial.lua"
  printf '%s\n' "$LUA_TRIVIAL" >"$plugin"
  for I8_ROUND in $(seq 1 "$rounds"); do
    on_zmta "i8-plain-$I8_ROUND" "" i8_plain || rc=1
    on_zmta "i8-lua-$I8_ROUND" "plugins:
  - name: trivial
    path: $plugin" i8_lua || rc=1
  done
  return $rc
}

# Item 9: spam checks.  The same Rspamd (2 worker processes, a minimal
# config: the checks cost the same for both) checks every message of item
# 1's load: zone-mta with rspamd.enabled (its HTTP client to /checkv2),
# Postfix with smtpd_milters (Rspamd's milter proxy, scanning itself).
# Rspamd's own rate, measured first, is the ceiling both stay under.
i9_rate() {
  child $PY "$HERE/rspamdrate.py" --url "http://127.0.0.1:$RSPAMD_PORT/checkv2" \
    --messages "$N1" --size "$SIZE1" --sessions "$SESSIONS" --label i9.rspamd \
    --results "$RESULTS"
}
# i9_run LABEL PORT: item 1's load, and a check that Rspamd saw each message.
i9_run() {
  local before after
  before=$(rspamd_scans)
  throughput "$1" "$2" "$N1" "$SIZE1" || return 1
  after=$(rspamd_scans)
  result "$1.scans" "$((after - before))"
  if [ $((after - before)) -lt "$N1" ]; then
    warn "$1: Rspamd logged $((after - before)) checks for $N1 messages"
    return 1
  fi
  log "  $1: Rspamd logged $((after - before)) checks"
}
i9_zmta() { i9_run i9.zmta "$ZMTA_SMTP"; }
i9_pf() { i9_run i9.pf "$PF_PORT"; }

item9() {
  section "9. Relay throughput with every message checked by Rspamd: $N1 messages of 2 KB, $SESSIONS sessions"
  rspamd_start || return 1
  log "  rspamd $(rspamd --version 2>&1 | awk '{print $NF}'): /checkv2 on 127.0.0.1:$RSPAMD_PORT, milter on 127.0.0.1:$RSPAMD_MILTER"
  local rc=0
  i9_rate || rc=1
  on_zmta i9-zmta "rspamd:
  enabled: true
  url: http://127.0.0.1:$RSPAMD_PORT/checkv2
  interfaces: ['*']
  onError: tempfail" i9_zmta || rc=1
  on_postfix i9-postfix i9_pf "smtpd_milters = inet:127.0.0.1:$RSPAMD_MILTER
milter_protocol = 6
milter_default_action = tempfail
milter_mail_macros = i {mail_addr} {client_addr} {client_name} {auth_authen}" || rc=1
  stop_pid "$RSPAMD_PID" rspamd
  return $rc
}

# --- main -------------------------------------------------------------------------

started=$EPOCHREALTIME
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
fs=$(df -T "$WORK" | awk 'NR == 2 {print $2 " on " $1}')
log "zone-mta benchmark against Postfix, $(date -u '+%Y-%m-%d %H:%M UTC')"
log "mode: $MODE"
log "machine: $(nproc) CPUs ($cpu), $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo); queues in $WORK ($fs)"
log "zone-mta: $("$BIN" --version 2>&1 | head -1) ($BIN)"
log "Postfix: $(postconf -d -h mail_version) (Debian package; private instance, queue files fsynced as usual)"
log "setup:"
log "  - both MTAs relay to one smtp-sink on 127.0.0.1, with 20 parallel connections"
log "    (zone-mta: zones.default.connections 20, domainConfig.default.maxConnections 20;"
log "    Postfix: smtp_destination_concurrency_limit 20, slow start from 5 as usual)"
log "  - zone-mta resolves the MX of $SINK_DOMAIN through dnsmasq (dns.nameservers"
log "    127.0.0.1@port); Postfix cannot ask a DNS server on a port other than 53, so"
log "    its transport map names [127.0.0.1]:port of the sink and it looks up nothing"
log "  - zone-mta logs at level warn (info writes a line per message and per delivery"
log "    attempt, which costs time); Postfix logs every message as usual, to a file"
log "  - smtp-source opens one session per message (no -d), as applications often do"

result meta.mode "$([ -n "$QUICK" ] && echo quick || echo full)"
result meta.n1 "$N1"
result meta.n2 "$N2"
result meta.size3 "$SIZE3"
result meta.rcpts4 "$((MSGS4 * RCPTS4))"
result meta.rate5 "$RATE5"
result meta.secs5 "$SECS5"
result meta.n6 "$N6"

dns_start || die "could not start dnsmasq"
sink_start || die "could not start smtp-sink"
log "peers: dnsmasq on 127.0.0.1:$DNS_PORT (pid $DNS_PID), smtp-sink on 127.0.0.1:$SINK_PORT (pid $SINK_PID)"

failed=()
for n in ${ITEMS:-1 2 3 4 5 6 7 8 9}; do
  item=item$n
  [ "$(type -t "$item")" = function ] || die "ITEMS: no item $n (the items are 1 to 9)"
  if ! "$item"; then
    warn "$item failed to run (in part or whole)"
    failed+=("$item")
  fi
done
result meta.failed "${failed[*]}"
result meta.elapsed_s "$(since "$started" "$EPOCHREALTIME" 0)"

section "Summary"
$PY "$HERE/report.py" "$RESULTS" || failed+=(report)
if [ ${#failed[@]} -gt 0 ]; then
  warn "failed to run: ${failed[*]}"
  exit 1
fi
exit 0
