# SPDX-License-Identifier: EUPL-1.2
"""Prints the benchmark's summary table from its results file.

    report.py RESULTS

RESULTS holds key=value lines appended by run.sh and the other scripts
(i1.zmta.e2e_rate=..., meta.mode=..., ...).  Each row shows a figure for
zone-mta and for Postfix, their ratio zone-mta / Postfix, the issue's
target and whether it is met.  A figure that was not measured (its item
failed or was skipped) shows as "-".  Exit status 0.
"""
import sys


def load(path):
    values = {}
    with open(path) as f:
        for line in f:
            key, sep, value = line.rstrip("\n").partition("=")
            if sep:
                values[key] = value
    return values


def num(values, key):
    try:
        return float(values[key])
    except (KeyError, ValueError):
        return None


def fmt(x, digits=0):
    if x is None:
        return "-"
    return f"{x:,.{digits}f}"


def main(path):
    v = load(path)
    quick = v.get("meta.mode") == "quick"
    rows = []  # (item, figure, zmta, postfix, ratio, target, met)
    verdicts = []

    def ratio(a, b):
        return a / b if a is not None and b else None

    def row(item, figure, z, p, digits=0, target="", check=None, lower_better=False):
        r = ratio(z, p)
        rtext = "-" if r is None else f"{r:.2f}x" + (" (lower is better)" if lower_better else "")
        met = ""
        if check is not None:
            ok = check(z, r)
            met = "-" if ok is None else ("yes" if ok else "NO")
            verdicts.append((f"item {item}: {figure} {target}", met))
        rows.append((str(item), figure, fmt(z, digits), fmt(p, digits), rtext, target, met))

    at_least = lambda k: (lambda z, r: None if r is None else r >= k)  # noqa: E731
    below = lambda k: (lambda z, r: None if z is None else z < k)  # noqa: E731

    n1, n2 = v.get("meta.n1", "?"), v.get("meta.n2", "?")
    row(1, f"ingest msgs/s ({n1} x 2 KB)", num(v, "i1.zmta.ingest_rate"), num(v, "i1.pf.ingest_rate"))
    row(1, "end-to-end msgs/s", num(v, "i1.zmta.e2e_rate"), num(v, "i1.pf.e2e_rate"),
        target=">= 5x", check=at_least(5))
    row(2, f"ingest msgs/s ({n2} x 100 KB)", num(v, "i2.zmta.ingest_rate"), num(v, "i2.pf.ingest_rate"))
    row(2, "end-to-end msgs/s", num(v, "i2.zmta.e2e_rate"), num(v, "i2.pf.e2e_rate"),
        target=">= 3x", check=at_least(3))
    dkim = v.get("i2.dkim")
    if dkim == "skipped":
        rows.append(("2", "DKIM rsa-2048 signing", "not implemented yet, skipped", "", "", ">= 3x", "-"))
        verdicts.append(("item 2: DKIM rsa-2048 end-to-end >= 3x", "- (not implemented yet)"))
    else:
        row(2, "end-to-end msgs/s, DKIM rsa-2048 (Postfix unsigned)",
            num(v, "i2.dkim.e2e_rate"), num(v, "i2.pf.e2e_rate"), target=">= 3x", check=at_least(3))
    size3 = num(v, "meta.size3") or 0
    label3 = f"{size3 / (1 << 30):.0f} GiB" if size3 >= (1 << 30) else f"{size3 / (1 << 20):.0f} MiB"
    row(3, f"one {label3} message: in (s)", num(v, "i3.zmta.in_s"), num(v, "i3.pf.in_s"), 2,
        lower_better=True)
    row(3, "in and out (s)", num(v, "i3.zmta.total_s"), num(v, "i3.pf.total_s"), 2,
        lower_better=True)
    hwm3 = num(v, "i3.zmta.hwm_kb")
    row(3, "zone-mta peak RSS (MiB)", hwm3 / 1024 if hwm3 else None, None, 1,
        target="< 64 MiB", check=below(64))
    rc4 = v.get("meta.rcpts4", "?")
    fill = num(v, "i4.fill_s")
    rcpts = num(v, "i4.rcpts")
    row(4, "queue fill over SMTP (recipients/s)", rcpts / fill if fill and rcpts else None, None)
    row(4, f"restart with {rc4} queued (s)", num(v, "i4.restart_s"), None, 2,
        target="< 30 s", check=below(30))
    hwm4 = num(v, "i4.hwm_kb")
    row(4, "RSS after restart, peak (MiB)", hwm4 / 1024 if hwm4 else None, None, 0,
        target="< 1024 MiB", check=below(1024))
    row(4, "GET /queue/default p50 (ms)", num(v, "i4.api_p50_ms"), None, 2)
    row(4, "delivery load p99 (s, bucket bound), quiet", num(v, "i4.quiet.load_p99_le_s"), None, 4)
    row(4, "delivery load p99 (s, bucket bound), while listing",
        num(v, "i4.listing.load_p99_le_s"), None, 4)
    row(4, "GET /queued/deferred/default (whole zone) p50 (ms)",
        num(v, "i4.list_deferred_p50_ms"), None, 1)
    row(4, "GET /summary of the whole zone (ms)", num(v, "i4.admin.summary_ms"), None, 1)
    row(4, "GET /deliveries, a page half way in (ms)", num(v, "i4.admin.deep_page_ms"), None, 1)
    row(4, "GET /deliveries, a page sorted by recipient over the zone (ms)",
        num(v, "i4.admin.sorted_page_ms"), None, 1)
    row(4, f"POST /ops delete of {v.get('i4.admin.purged', '?')} deliveries (s)",
        num(v, "i4.admin.purge_s"), None, 2)
    row(4, "slowest SMTP transaction during the purge (ms)", num(v, "i4.admin.smtp_max_ms"),
        None, 1, target="< 100 ms", check=below(100))
    row(4, "slowest GET /health during the purge (ms)", num(v, "i4.admin.health_max_ms"), None, 1)
    rate5 = v.get("meta.rate5", "?")
    row(5, f"ingest latency p50 (ms) at {rate5}/s", num(v, "i5.zmta.p50_ms"), num(v, "i5.pf.p50_ms"),
        2, lower_better=True)
    row(5, "ingest latency p99 (ms)", num(v, "i5.zmta.p99_ms"), num(v, "i5.pf.p99_ms"), 2,
        lower_better=True)
    n6 = v.get("meta.n6", "?")
    row(6, f"ingest msgs/s over STARTTLS ({n6} x 2 KB, a handshake each)",
        num(v, "i6.zmta.ingest_rate"), num(v, "i6.pf.ingest_rate"))
    row(6, "end-to-end msgs/s (TLS in, plain out)", num(v, "i6.zmta.e2e_rate"),
        num(v, "i6.pf.e2e_rate"))

    n7 = v.get("meta.n7", "?")
    row(7, f"suppression list: fill {n7} entries (s)", num(v, "i7.zmta.fill_s"),
        num(v, "i7.pf.fill_s"), 2, lower_better=True)
    row(7, f"lookup ns at {n7} entries (a hit)", num(v, "i7.zmta.lookup_hit_ns"),
        num(v, "i7.pf.lookup_hit_ns"), lower_better=True)
    row(7, f"lookup ns at {n7} entries (a miss)", num(v, "i7.zmta.lookup_miss_ns"), None)
    row(7, f"lookup ns at {n7} entries (a domain entry)", num(v, "i7.zmta.lookup_domain_ns"),
        None)
    row(7, "lookup ns at 1,000 entries (a hit: O(1) if close to the above)",
        num(v, "i7.small.lookup_hit_ns"), None)
    row(7, f"RSS MB for {n7} entries", num(v, "i7.zmta.rss_mb"), None, 1)
    row(7, f"GET /suppressionlist page of 10,000 at {n7} entries (ms on the loop)",
        num(v, "i7.zmta.list_ms"), None, 1)
    row(7, "bytes per entry", num(v, "i7.zmta.bytes_per_entry"), None)

    # Item 8 compares zone-mta with itself: the "Postfix" column holds the
    # run without plugins.
    def median(prefix, suffix):
        xs = sorted(float(val) for key, val in v.items()
                    if key.startswith(prefix) and key.endswith(suffix))
        return xs[len(xs) // 2] if xs else None
    row(8, "end-to-end msgs/s, median of the rounds: trivial Lua plugin (Postfix "
        "column: none)", median("i8.lua.", ".e2e_rate"), median("i8.plain.", ".e2e_rate"),
        0, ">= 0.9x", at_least(0.9))

    # Item 9: both MTAs with the same Rspamd; its own rate is the ceiling.
    rate9 = num(v, "i9.rspamd.rate")
    row(9, "Rspamd's own rate, checks/s (20 clients on /checkv2)", rate9, None)
    row(9, "ingest msgs/s, every message checked (Postfix: milter)",
        num(v, "i9.zmta.ingest_rate"), num(v, "i9.pf.ingest_rate"))
    row(9, "end-to-end msgs/s, every message checked", num(v, "i9.zmta.e2e_rate"),
        num(v, "i9.pf.e2e_rate"))
    row(9, "ingest as a share of Rspamd's own rate (%)",
        100 * num(v, "i9.zmta.ingest_rate") / rate9
        if rate9 and num(v, "i9.zmta.ingest_rate") else None,
        100 * num(v, "i9.pf.ingest_rate") / rate9
        if rate9 and num(v, "i9.pf.ingest_rate") else None)

    headers = ("item", "figure", "zone-mta", "Postfix", "zone-mta/Postfix", "target", "met")
    widths = [max(len(str(r[i])) for r in rows + [headers]) for i in range(len(headers))]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths))
    print(line)
    print("-" * len(line))
    for r in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
    print()
    if quick:
        print("Quick mode: sizes are reduced, so the targets (set for the full sizes) are only indicative.")
    met = [t for t, m in verdicts if m == "yes"]
    missed = [t for t, m in verdicts if m == "NO"]
    unknown = [t for t, m in verdicts if m not in ("yes", "NO")]
    print(f"Targets met ({len(met)}): " + ("; ".join(met) or "none"))
    print(f"Targets missed ({len(missed)}): " + ("; ".join(missed) or "none"))
    if unknown:
        print(f"Targets not measured ({len(unknown)}): " + "; ".join(unknown))
    failed = v.get("meta.failed", "").strip()
    print(f"Elapsed: {v.get('meta.elapsed_s', '?')} s" + (f"; failed to run: {failed}" if failed else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
