# SPDX-License-Identifier: EUPL-1.2
"""Queue administration at scale (item 4c), on item 4's queue of a million
recipients in the disabled zone `default`:

    purge.py --api URL --port SMTP_PORT --rate R --label NAME --results FILE

GET /summary over the zone, one page of GET /deliveries half way in and
one sorted by recipient (over the whole zone),
then the whole zone deleted by one POST /ops while R messages a second
go to the live zone (delivered to smtp-sink) and another thread times
GET /health: how long the purge took, the slowest SMTP transaction and
the slowest /health meanwhile (the loop's worst stall as a client sees
it), and how long deliveries waited for their message (as listing.py).
Appends NAME.* to the results.
"""
import argparse
import json
import sys
import threading
import time
import urllib.request

from common import http_get, percentile, write_result
from listing import load_histogram, quantile, sender


def post(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read())


def prober(api, stop, times, errors):
    try:
        while not stop.is_set():
            t = time.monotonic()
            status, _ = http_get(f"{api}/health", timeout=60)
            times.append((time.monotonic() - t) * 1000)
            if status != 200:
                errors.append(f"GET /health: HTTP {status}")
                return
            time.sleep(0.002)
    except Exception as e:  # noqa: BLE001
        errors.append(repr(e))


def timed_get(url):
    t = time.monotonic()
    status, body = http_get(url, timeout=120)
    assert status == 200, (url, status)
    return body, (time.monotonic() - t) * 1000


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--api", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--rate", type=float, default=50)
    ap.add_argument("--label", required=True)
    ap.add_argument("--results", required=True)
    a = ap.parse_args()
    summary, summary_ms = timed_get(f"{a.api}/summary?zone=default")
    total = summary["total"]
    # a page half way in: the cursor after half of the zone, page by page
    listed, _ = timed_get(f"{a.api}/deliveries?zone=default&limit=1000")
    cursor = listed["next"]
    pages = 1
    while pages < total // 2000 and cursor:
        listed, _ = timed_get(f"{a.api}/deliveries?zone=default&limit=1000&after={cursor}")
        cursor = listed["next"]
        pages += 1
    page, page_ms = timed_get(f"{a.api}/deliveries?zone=default&limit=100&after={cursor}")
    assert len(page["deliveries"]) == 100
    # sorted by recipient over the whole zone: every delivery looked at
    by_rcpt, sorted_ms = timed_get(f"{a.api}/deliveries?zone=default&limit=100"
                                   "&sort=recipient&order=desc")
    assert by_rcpt["scanned"] == total and len(by_rcpt["deliveries"]) == 100, by_rcpt["scanned"]
    print(f"  GET /summary over {total:,} deliveries: {summary_ms:.0f} ms; "
          f"a page of 100 after {pages:,} pages of 1,000: {page_ms:.1f} ms; "
          f"a page sorted by recipient over all of them: {sorted_ms:.0f} ms")

    before = load_histogram(a.api)
    stop, errors = threading.Event(), []
    smtp_ms, health_ms = [], []
    body = b"From: <s@bench.test>\r\nSubject: live\r\n\r\nbody\r\n.\r\n"
    threads = [threading.Thread(target=sender,
                                args=(a.port, a.rate, body, stop.is_set, smtp_ms, errors)),
               threading.Thread(target=prober, args=(a.api, stop, health_ms, errors))]
    for t in threads:
        t.start()
    time.sleep(2)
    quiet = len(smtp_ms), len(health_ms)
    t0 = time.monotonic()
    op = post(f"{a.api}/ops", {"action": "delete", "filter": {"zone": "default"}})["op"]
    while True:
        status, entry = http_get(f"{a.api}/ops/{op['id']}", timeout=60)
        if entry.get("state") == "done":
            break
        time.sleep(0.05)
    purge_s = time.monotonic() - t0
    during = len(smtp_ms), len(health_ms)
    time.sleep(2)
    stop.set()
    for t in threads:
        t.join()
    after = load_histogram(a.api)
    if errors:
        print("purge.py: " + "; ".join(errors), file=sys.stderr)
        sys.exit(1)
    smtp_during = smtp_ms[quiet[0]:during[0]]
    health_during = health_ms[quiet[1]:during[1]]
    p99, loads = quantile(before, after, 0.99)
    counts, _ = timed_get(f"{a.api}/queue/default")
    assert entry["affected"] == total and counts["queued"] == 0, (entry, counts)
    write_result(a.results, **{
        f"{a.label}.summary_ms": f"{summary_ms:.1f}", f"{a.label}.deep_page_ms": f"{page_ms:.1f}",
        f"{a.label}.sorted_page_ms": f"{sorted_ms:.1f}",
        f"{a.label}.purge_s": f"{purge_s:.2f}", f"{a.label}.purged": total,
        f"{a.label}.smtp_max_ms": f"{max(smtp_during):.1f}",
        f"{a.label}.smtp_p99_ms": f"{percentile(smtp_during, 99):.1f}",
        f"{a.label}.health_max_ms": f"{max(health_during):.1f}",
        f"{a.label}.load_p99_le_s": p99})
    print(f"  POST /ops delete of {total:,} deliveries: {purge_s:.2f} s; meanwhile "
          f"{len(smtp_during)} SMTP transactions (max {max(smtp_during):.1f} ms, p99 "
          f"{percentile(smtp_during, 99):.1f} ms), {len(health_during)} GET /health (max "
          f"{max(health_during):.1f} ms), {loads} delivery loads p99 <= {p99} s")


if __name__ == "__main__":
    main()
