# SPDX-License-Identifier: EUPL-1.2
"""Listing a big queue while mail flows (item 4b): does GET /queued hold
deliveries up?

    listing.py --api URL --port SMTP_PORT --seconds S --rate R \
               --label NAME --results FILE

For S seconds, sends R messages a second (one recipient each, to the live
zone, which delivers to smtp-sink; 300 KB each, so that their delivery
reads them from the store, not from the just-queued cache, which keeps
single-chunk bodies only) while another thread lists the big,
disabled zone again and again: GET /queued/deferred/default (nothing is
deferred, so every call walks the whole zone) and /queued/queued/default,
the first page of 1,000 by queue id.
Reports how long deliveries waited for their message
(zonemta_message_load_seconds, p50/p99 as histogram bucket bounds, over
the run only) and the listing latency.  Appends NAME.* to the results.
"""
import argparse
import re
import sys
import threading
import time

from common import Smtp, http_get, percentile, write_result


def load_histogram(api):
    """{le: cumulative count} of zonemta_message_load_seconds."""
    status, text = http_get(api + "/metrics", timeout=60, raw=True)
    assert status == 200, status
    out = {}
    for m in re.finditer(r'^zonemta_message_load_seconds_bucket\{le="([^"]+)"\} (\d+)', text, re.M):
        out[float(m.group(1))] = int(m.group(2))
    return out


def quantile(before, after, q):
    """The bucket bound holding the q-quantile of the observations between."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0) for b in bounds]
    total = counts[-1]
    if total == 0:
        return None, 0
    for b, c in zip(bounds, counts):
        if c >= q * total:
            return b, total
    return bounds[-1], total


LIVE_BODY = (b"From: <s@bench.test>\r\nSubject: live\r\n\r\n" + (b"x" * 98 + b"\r\n") * 3000 +
             b".\r\n")


def sender(port, rate, body, done, times, errors):
    """Messages to the live zone at `rate` a second until done() says so,
    each transaction's time (ms) appended to `times`."""
    try:
        smtp = Smtp(port)
        t0 = time.monotonic()
        n = 0
        while not done():
            t = time.monotonic()
            smtp.send(b"MAIL FROM:<s@bench.test>\r\nRCPT TO:<live%d@sink.bench.test>\r\nDATA\r\n" % n)
            smtp.expect(250)
            smtp.expect(250)
            smtp.expect(354)
            smtp.send(body)
            smtp.expect(250)
            times.append((time.monotonic() - t) * 1000)
            n += 1
            wait = t0 + n / rate - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        smtp.close()
    except Exception as e:  # noqa: BLE001 - reported by the caller
        errors.append(repr(e))


def lister(api, stop, times, errors):
    try:
        while not stop.is_set():
            for kind in ("deferred", "queued"):
                t0 = time.monotonic()
                # by queue id (after=): ZoneMTA's offset paging sorts the whole
                # zone, which is refused above 100,000 deliveries
                status, _ = http_get(f"{api}/queued/{kind}/default?pageSize=1000&after=",
                                     timeout=120)
                times[kind].append((time.monotonic() - t0) * 1000)
                if status != 200:
                    errors.append(f"GET /queued/{kind}: HTTP {status}")
                    return
    except Exception as e:  # noqa: BLE001
        errors.append(repr(e))


def measure(api, port, seconds, rate, listing):
    before = load_histogram(api)
    sent, errors, stop = [], [], threading.Event()
    times = {"deferred": [], "queued": []}
    end = time.monotonic() + seconds
    threads = [threading.Thread(target=sender, args=(port, rate, LIVE_BODY,
                                                     lambda: time.monotonic() >= end, sent,
                                                     errors))]
    if listing:
        threads.append(threading.Thread(target=lister, args=(api, stop, times, errors)))
    for t in threads:
        t.start()
    threads[0].join()
    stop.set()
    for t in threads[1:]:
        t.join()
    time.sleep(1.0)  # the last deliveries
    after = load_histogram(api)
    if errors:
        print("listing.py: " + "; ".join(errors), file=sys.stderr)
        sys.exit(1)
    return quantile(before, after, 0.5), quantile(before, after, 0.99), times, len(sent)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--api", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--rate", type=float, default=100)
    ap.add_argument("--label", required=True)
    ap.add_argument("--results", required=True)
    a = ap.parse_args()
    for listing in (False, True):
        (p50, n), (p99, _), times, sent = measure(a.api, a.port, a.seconds, a.rate, listing)
        tag = "listing" if listing else "quiet"
        res = {f"{a.label}.{tag}.load_p50_le_s": p50, f"{a.label}.{tag}.load_p99_le_s": p99,
               f"{a.label}.{tag}.loads": n}
        line = (f"  {tag}: {sent} messages sent, {n} delivery loads: p50 <= {p50} s, "
                f"p99 <= {p99} s")
        if listing:
            for kind in ("deferred", "queued"):
                t = times[kind]
                res[f"{a.label}.list_{kind}_p50_ms"] = f"{percentile(t, 50):.1f}"
                res[f"{a.label}.list_{kind}_max_ms"] = f"{max(t):.1f}"
                line += (f"; GET /queued/{kind} x{len(t)}: p50 {percentile(t, 50):.1f} ms, "
                         f"max {max(t):.1f} ms")
        write_result(a.results, **res)
        print(line)


if __name__ == "__main__":
    main()
